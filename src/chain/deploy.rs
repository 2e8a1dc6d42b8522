//! Deployment of the jurisdiction (EntityProvider, then Depository) and of test tokens.

use super::bindings::{Depository, EntityProvider, TestToken};
use super::client::{ChainConfig, TokenConfig, call_error, provider_for, rpc_error, send};
use super::error::{ChainError, Result};
use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider};
use xln_core::crypto::SignerKey;

/// Blocks during which a dispute can be countered, on devnets.
pub const DEVNET_DISPUTE_WINDOW: u64 = 20;

/// Where the contracts went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deployment {
    pub entity_provider: Address,
    pub depository: Address,
    /// The block of the Depository's deployment: where event following starts.
    pub block: u64,
    pub gas_used: u64,
}

/// Deploys EntityProvider and a Depository that uses it, paid by `deployer`.
pub async fn deploy(
    rpc_url: &str,
    deployer: &SignerKey,
    dispute_window: u64,
) -> Result<Deployment> {
    if dispute_window == 0 {
        return Err(ChainError::Deploy(
            "the dispute window must be at least one block".into(),
        ));
    }
    let provider = provider_for(rpc_url, deployer)?;
    deploy_with(&provider, dispute_window).await
}

pub async fn deploy_with(provider: &DynProvider, dispute_window: u64) -> Result<Deployment> {
    let ep = EntityProvider::deploy_builder(provider);
    let ep_receipt = ep
        .send()
        .await
        .map_err(|e| call_error("deploy EntityProvider", e))?
        .get_receipt()
        .await
        .map_err(|e| ChainError::Deploy(e.to_string()))?;
    let entity_provider = ep_receipt
        .contract_address
        .filter(|_| ep_receipt.status())
        .ok_or_else(|| ChainError::Deploy("EntityProvider deployment failed".into()))?;
    let dep = Depository::deploy_builder(provider, entity_provider, dispute_window);
    let dep_receipt = dep
        .send()
        .await
        .map_err(|e| call_error("deploy Depository", e))?
        .get_receipt()
        .await
        .map_err(|e| ChainError::Deploy(e.to_string()))?;
    let depository = dep_receipt
        .contract_address
        .filter(|_| dep_receipt.status())
        .ok_or_else(|| ChainError::Deploy("Depository deployment failed".into()))?;
    Ok(Deployment {
        entity_provider,
        depository,
        block: dep_receipt.block_number.unwrap_or_default(),
        gas_used: ep_receipt.gas_used + dep_receipt.gas_used,
    })
}

/// Deploys a TestToken (open mint: devnets and tests only).
pub async fn deploy_test_token(
    provider: &DynProvider,
    name: &str,
    symbol: &str,
) -> Result<Address> {
    let receipt = TestToken::deploy_builder(provider, name.to_string(), symbol.to_string())
        .send()
        .await
        .map_err(|e| call_error("deploy TestToken", e))?
        .get_receipt()
        .await
        .map_err(|e| ChainError::Deploy(e.to_string()))?;
    receipt
        .contract_address
        .filter(|_| receipt.status())
        .ok_or_else(|| ChainError::Deploy(format!("TestToken {symbol} deployment failed")))
}

/// Mints `amount` of a test token to `to`.
pub async fn mint(provider: &DynProvider, token: Address, to: Address, amount: U256) -> Result<()> {
    send("mint", TestToken::new(token, provider).mint(to, amount)).await?;
    Ok(())
}

/// A whole devnet jurisdiction: contracts, the given test tokens registered, `amount` of each
/// minted to every address in `fund`, and the config the node reads.
pub async fn deploy_devnet(
    rpc_url: &str,
    deployer: &SignerKey,
    tokens: &[(&str, &str)],
    fund: &[Address],
    amount: U256,
) -> Result<ChainConfig> {
    let provider = provider_for(rpc_url, deployer)?;
    let chain_id = provider
        .get_chain_id()
        .await
        .map_err(|e| rpc_error("eth_chainId", e))?;
    let deployment = deploy_with(&provider, DEVNET_DISPUTE_WINDOW).await?;
    let depository = Depository::new(deployment.depository, &provider);
    let mut configs = Vec::new();
    for (name, symbol) in tokens {
        let address = deploy_test_token(&provider, name, symbol).await?;
        send("registerToken", depository.registerToken(address)).await?;
        let id = depository
            .tokenIdOf(address)
            .call()
            .await
            .map_err(|e| call_error("tokenIdOf", e))?;
        for to in fund {
            mint(&provider, address, *to, amount).await?;
        }
        configs.push(TokenConfig {
            symbol: symbol.to_string(),
            address,
            id,
        });
    }
    Ok(ChainConfig {
        rpc_url: rpc_url.to_string(),
        chain_id,
        depository: deployment.depository,
        entity_provider: deployment.entity_provider,
        tokens: configs,
        start_block: deployment.block,
    })
}
