//! A connection to one jurisdiction: the chain, its Depository and EntityProvider, and the key
//! that pays for transactions. Checks at connect time that the RPC answers, serves the
//! configured chain and has the contracts' code at the configured addresses.

use super::batch::{BatchBuilder, ChainOp, SignedSettlement};
use super::bindings::{Depository, EntityProvider, TestToken};
use super::encode::{self, entity_b256, order};
use super::error::{ChainError, Result};
use alloy::contract::{CallBuilder, CallDecoder};
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::reqwest::Url;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use xln_core::board::{Board, EntityId, QuorumSignature};
use xln_core::crypto::{Hash, SignerKey};
use xln_core::delta::TokenId;
use xln_core::entity::ChainRequest;

/// How long one connection check may take before the RPC counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a sent transaction may take to be mined before the wait is given up.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the node finds its jurisdiction (written by `xln devnet`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainConfig {
    pub rpc_url: String,
    pub chain_id: u64,
    pub depository: Address,
    pub entity_provider: Address,
    /// Test tokens deployed with a devnet, by symbol (empty elsewhere).
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// The block from which the follower reads events (the deployment's).
    #[serde(default)]
    pub start_block: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenConfig {
    pub symbol: String,
    pub address: Address,
    pub id: TokenId,
}

impl ChainConfig {
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text)
            .map_err(|e| ChainError::Config(format!("{}: {e}", path.display())))
    }

    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| ChainError::Config(e.to_string()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, text + "\n")?;
        Ok(())
    }
}

/// A mined transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxOutcome {
    pub tx: B256,
    pub block: u64,
    pub gas_used: u64,
}

/// The dispute of an account, as the Depository holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisputeInfo {
    pub height: u64,
    pub deadline: u64,
    pub started_by: EntityId,
    pub frame_hash: Hash,
}

/// An account as the Depository holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    pub settlement_nonce: U256,
    pub finalized_height: u64,
    pub dispute: Option<DisputeInfo>,
    pub token_ids: Vec<TokenId>,
}

/// An HTTP provider that signs with `key`.
pub fn provider_for(url: &str, key: &SignerKey) -> Result<DynProvider> {
    let url_parsed = Url::parse(url).map_err(|e| ChainError::InvalidUrl {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    let signer = PrivateKeySigner::from_bytes(&B256::from(key.secret_bytes()))
        .map_err(|e| ChainError::Config(format!("signer key: {e}")))?;
    // The nonce is read from the node for each transaction (not cached): a transaction
    // refused at gas estimation must not use up a nonce, and the chain may be reset under us
    // (a devnet restarted, a reorg).
    Ok(ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(EthereumWallet::from(signer))
        .connect_http(url_parsed)
        .erased())
}

/// The error of a contract call or transaction, with the contract's revert decoded.
pub fn call_error(call: &'static str, error: alloy::contract::Error) -> ChainError {
    if let Some(e) = error.as_decoded_interface_error::<Depository::DepositoryErrors>() {
        return ChainError::Reverted {
            call,
            reason: format!("{e:?}"),
        };
    }
    if let Some(e) = error.as_decoded_interface_error::<EntityProvider::EntityProviderErrors>() {
        return ChainError::Reverted {
            call,
            reason: format!("{e:?}"),
        };
    }
    if let Some(e) = error.as_decoded_interface_error::<TestToken::TestTokenErrors>() {
        return ChainError::Reverted {
            call,
            reason: format!("{e:?}"),
        };
    }
    match &error {
        alloy::contract::Error::TransportError(t) if t.is_transport_error() => {
            ChainError::Unreachable {
                url: None,
                reason: format!("{call}: {t}"),
            }
        }
        alloy::contract::Error::TransportError(t)
            if t.as_error_resp()
                .is_some_and(|p| p.message.contains("revert")) =>
        {
            ChainError::Reverted {
                call,
                reason: t.to_string(),
            }
        }
        alloy::contract::Error::ZeroData(..) => ChainError::Rpc {
            call,
            reason: format!("{error} (is the contract deployed at the configured address?)"),
        },
        _ => ChainError::Rpc {
            call,
            reason: error.to_string(),
        },
    }
}

/// The error of a plain RPC request.
pub fn rpc_error(call: &'static str, error: alloy::transports::TransportError) -> ChainError {
    if error.is_transport_error() {
        ChainError::Unreachable {
            url: None,
            reason: format!("{call}: {error}"),
        }
    } else {
        ChainError::Rpc {
            call,
            reason: error.to_string(),
        }
    }
}

/// Sends a contract transaction and waits for its receipt. A call that would revert is refused
/// by gas estimation before anything is sent.
pub async fn send<P: Provider, D: CallDecoder>(
    call: &'static str,
    builder: CallBuilder<P, D>,
) -> Result<TxOutcome> {
    let pending = builder.send().await.map_err(|e| call_error(call, e))?;
    let receipt = pending
        .with_timeout(Some(RECEIPT_TIMEOUT))
        .get_receipt()
        .await
        .map_err(|e| ChainError::Rpc {
            call,
            reason: format!("no receipt: {e}"),
        })?;
    if !receipt.status() {
        return Err(ChainError::TxFailed {
            call,
            tx: receipt.transaction_hash,
        });
    }
    Ok(TxOutcome {
        tx: receipt.transaction_hash,
        block: receipt.block_number.unwrap_or_default(),
        gas_used: receipt.gas_used,
    })
}

/// One jurisdiction, reached through one RPC, paying with one key.
#[derive(Debug, Clone)]
pub struct Jurisdiction {
    provider: DynProvider,
    config: ChainConfig,
    domain: Hash,
    sender: Address,
}

impl Jurisdiction {
    /// Connects and checks the chain id and the contracts' code.
    pub async fn connect(config: ChainConfig, payer: &SignerKey) -> Result<Self> {
        let provider = provider_for(&config.rpc_url, payer)?;
        let unreachable = |reason: String| ChainError::Unreachable {
            url: Some(config.rpc_url.clone()),
            reason,
        };
        let actual = tokio::time::timeout(CONNECT_TIMEOUT, provider.get_chain_id())
            .await
            .map_err(|_| unreachable(format!("no answer in {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        if actual != config.chain_id {
            return Err(ChainError::WrongChainId {
                url: config.rpc_url.clone(),
                expected: config.chain_id,
                actual,
            });
        }
        for (name, address) in [
            ("Depository", config.depository),
            ("EntityProvider", config.entity_provider),
        ] {
            let code = provider
                .get_code_at(address)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            if code.is_empty() {
                return Err(ChainError::MissingContract { name, address });
            }
        }
        let domain = encode::domain(config.chain_id, config.depository);
        Ok(Self {
            provider,
            sender: encode::address(&payer.address()),
            config,
            domain,
        })
    }

    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }
    pub fn config(&self) -> &ChainConfig {
        &self.config
    }
    /// The Depository's domain: what account frames and settlements are bound to.
    pub fn domain(&self) -> Hash {
        self.domain
    }
    /// The address that pays for transactions.
    pub fn sender(&self) -> Address {
        self.sender
    }
    pub fn depository(&self) -> Depository::DepositoryInstance<&DynProvider> {
        Depository::new(self.config.depository, &self.provider)
    }
    pub fn entity_provider(&self) -> EntityProvider::EntityProviderInstance<&DynProvider> {
        EntityProvider::new(self.config.entity_provider, &self.provider)
    }

    pub async fn block_number(&self) -> Result<u64> {
        self.provider
            .get_block_number()
            .await
            .map_err(|e| rpc_error("eth_blockNumber", e))
    }

    // ------------------------------------------------------------ tokens and reserves

    /// Registers an ERC-20 and returns its token id.
    pub async fn register_token(&self, token: Address) -> Result<(TokenId, TxOutcome)> {
        let outcome = send("registerToken", self.depository().registerToken(token)).await?;
        Ok((self.token_id(token).await?, outcome))
    }

    pub async fn token_id(&self, token: Address) -> Result<TokenId> {
        self.depository()
            .tokenIdOf(token)
            .call()
            .await
            .map_err(|e| call_error("tokenIdOf", e))
    }

    /// Approves the Depository for `amount` of `token` (from the payer).
    pub async fn approve(&self, token: Address, amount: U256) -> Result<TxOutcome> {
        let erc20 = TestToken::new(token, &self.provider);
        send("approve", erc20.approve(self.config.depository, amount)).await
    }

    /// Deposits `amount` of `token` from the payer into `entity`'s reserve (approve first).
    pub async fn deposit(
        &self,
        entity: &EntityId,
        token: Address,
        amount: U256,
    ) -> Result<TxOutcome> {
        send(
            "deposit",
            self.depository()
                .deposit(entity_b256(entity), token, amount),
        )
        .await
    }

    pub async fn reserve(&self, entity: &EntityId, token: TokenId) -> Result<U256> {
        self.depository()
            .reserves(entity_b256(entity), token)
            .call()
            .await
            .map_err(|e| call_error("reserves", e))
    }

    pub async fn debt(
        &self,
        debtor: &EntityId,
        creditor: &EntityId,
        token: TokenId,
    ) -> Result<U256> {
        self.depository()
            .debts(entity_b256(debtor), entity_b256(creditor), token)
            .call()
            .await
            .map_err(|e| call_error("debts", e))
    }

    pub async fn entity_nonce(&self, entity: &EntityId) -> Result<U256> {
        self.depository()
            .entityNonces(entity_b256(entity))
            .call()
            .await
            .map_err(|e| call_error("entityNonces", e))
    }

    // ------------------------------------------------------------ accounts

    /// On-chain (collateral, ondelta) of one token of the account of `a` and `b`.
    pub async fn account_token(
        &self,
        a: &EntityId,
        b: &EntityId,
        token: TokenId,
    ) -> Result<(u128, i128)> {
        let (left, right) = order(*a, *b);
        let r = self
            .depository()
            .accountToken(entity_b256(&left), entity_b256(&right), token)
            .call()
            .await
            .map_err(|e| call_error("accountToken", e))?;
        Ok((r.collateral, r.ondelta))
    }

    pub async fn account_info(&self, a: &EntityId, b: &EntityId) -> Result<AccountInfo> {
        let (left, right) = order(*a, *b);
        let r = self
            .depository()
            .accountInfo(entity_b256(&left), entity_b256(&right))
            .call()
            .await
            .map_err(|e| call_error("accountInfo", e))?;
        let dispute = (r.dispute.height != 0).then(|| DisputeInfo {
            height: r.dispute.height,
            deadline: r.dispute.deadline,
            started_by: encode::entity_id(&r.dispute.startedBy),
            frame_hash: encode::hash(&r.dispute.frameHash),
        });
        Ok(AccountInfo {
            settlement_nonce: r.settlementNonce,
            finalized_height: r.finalizedHeight,
            dispute,
            token_ids: r.tokenIds,
        })
    }

    // ------------------------------------------------------------ entity-authorized

    /// Signs `batch` for `entity` with its quorum (`sign` gives the quorum over a digest) at
    /// the entity's current nonce, and submits it as one transaction.
    pub async fn submit_batch(
        &self,
        entity: &EntityId,
        board: &Board,
        batch: Depository::Batch,
        sign: &(dyn Fn(&Hash) -> QuorumSignature + Sync),
    ) -> Result<TxOutcome> {
        let nonce = self.entity_nonce(entity).await?;
        let digest = encode::batch_digest(&self.domain, entity, nonce, &batch);
        self.submit_signed_batch(entity, board, batch, &digest, &sign(&digest))
            .await
    }

    /// Submits `batch` for `entity` with `quorum`, the board's signatures over `digest` (the
    /// batch digest at the nonce it was signed for; the chain refuses it at any other).
    pub async fn submit_signed_batch(
        &self,
        entity: &EntityId,
        board: &Board,
        batch: Depository::Batch,
        digest: &Hash,
        quorum: &QuorumSignature,
    ) -> Result<TxOutcome> {
        let sigs = encode::chain_signatures(board, digest, quorum);
        send(
            "processBatch",
            self.depository().processBatch(
                entity_b256(entity),
                batch,
                encode::encode_board(board),
                sigs,
            ),
        )
        .await
    }

    /// Sends what the core asked of the chain for `entity` as one batch transaction.
    pub async fn submit_requests(
        &self,
        entity: &EntityId,
        board: &Board,
        requests: &[ChainRequest],
        sign: &(dyn Fn(&Hash) -> QuorumSignature + Sync),
    ) -> Result<TxOutcome> {
        let batch = BatchBuilder::from_ops(requests.iter().map(ChainOp::from)).build();
        self.submit_batch(entity, board, batch, sign).await
    }

    /// Submits a cooperative settlement through the open `settle` entry point: `entity`'s
    /// quorum over the settlement digest stands for `entity`, the counterparty's is inside.
    pub async fn settle(
        &self,
        entity: &EntityId,
        board: &Board,
        entity_sigs: &QuorumSignature,
        settlement: &SignedSettlement,
    ) -> Result<TxOutcome> {
        let sigs = encode::chain_signatures(board, &settlement.digest, entity_sigs);
        send(
            "settle",
            self.depository().settle(
                entity_b256(entity),
                settlement.to_abi(),
                encode::encode_board(board),
                sigs,
            ),
        )
        .await
    }

    /// Splits the collateral of a disputed account after its window. Anyone may call it.
    pub async fn finalize_dispute(&self, a: &EntityId, b: &EntityId) -> Result<TxOutcome> {
        let (left, right) = order(*a, *b);
        send(
            "finalizeDispute",
            self.depository()
                .finalizeDispute(entity_b256(&left), entity_b256(&right)),
        )
        .await
    }
}
