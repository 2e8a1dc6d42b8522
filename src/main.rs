//! The `xln` binary. Today it only reports what is built: the node, the chain adapter and the
//! console that will drive the core from here are not written yet (see README.md).

fn main() {
    println!(
        "xln {}: the protocol core (crates/xln-core) is built; the node, the chain adapter and \
         the console are not yet. See README.md.",
        env!("CARGO_PKG_VERSION")
    );
}
