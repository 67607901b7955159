//! Tenants on first use: a tenant's lanes are declared and the tenant registered in the state
//! store (where workers find it and consume its queues) before its first job is published, once
//! per process. The producer and the dead-letter replay share it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use lapin::Connection;
use yizhan_broker::Names;
use yizhan_schemas::DEFAULT_TENANT;
use yizhan_state::StateStore;

/// The tenants this process has set up, and where to register new ones.
pub(crate) struct Tenants {
    names: Names,
    /// None: tenants other than `default` are refused, unless `declare_only`.
    registry: Option<Arc<dyn StateStore>>,
    /// Without a registry, declare the queues and do not register (the dead-letter replay: its
    /// tenants were registered when their jobs were first submitted).
    declare_only: bool,
    ready: Mutex<HashSet<String>>,
}

impl Tenants {
    /// Tenants other than `default` need a registry ([`Tenants::set_registry`]).
    pub(crate) fn new(names: Names) -> Tenants {
        Tenants { names, registry: None, declare_only: false, ready: Mutex::new(HashSet::new()) }
    }

    /// Without a registry, tenants' queues are declared but the tenants not registered.
    pub(crate) fn declare_only(names: Names) -> Tenants {
        Tenants { declare_only: true, ..Tenants::new(names) }
    }

    pub(crate) fn set_registry(&mut self, registry: Arc<dyn StateStore>) {
        self.registry = Some(registry);
    }

    /// The tenants other than `default` among `tenants` not set up yet, each once. Tenant
    /// `default` costs a string comparison (no lock).
    pub(crate) fn unready<'t>(&self, tenants: impl Iterator<Item = &'t str>) -> Vec<&'t str> {
        let mut unready: Vec<&str> = Vec::new();
        let mut ready = None;
        for tenant in tenants {
            if tenant == DEFAULT_TENANT {
                continue;
            }
            let ready = ready.get_or_insert_with(|| self.ready.lock().expect("tenants lock"));
            if !ready.contains(tenant) && !unready.contains(&tenant) {
                unready.push(tenant);
            }
        }
        unready
    }

    /// Forgets a tenant whose queue turned out missing, so that its next job declares it again.
    pub(crate) fn forget(&self, tenant: &str) {
        self.ready.lock().expect("tenants lock").remove(tenant);
    }

    /// Declares the lanes of `tenants` and registers them; returns why, for each tenant that
    /// could not be set up (its jobs must not be published).
    pub(crate) async fn prepare(&self, connection: &Connection, tenants: Vec<&str>) -> HashMap<String, String> {
        let mut failed = HashMap::new();
        if self.registry.is_none() && !self.declare_only {
            for tenant in tenants {
                let reason = "no state store to register the tenant in (no worker would consume its queues)";
                failed.insert(tenant.to_string(), reason.to_string());
            }
            return failed;
        }
        let mut declared = Vec::new();
        for tenant in tenants {
            if !yizhan_schemas::is_valid_tenant(tenant) {
                failed.insert(tenant.to_string(), "not a tenant name (^[a-z0-9][a-z0-9_-]{0,62}$)".to_string());
                continue;
            }
            // A channel of its own: a refused declaration closes the channel it was made on.
            let outcome = match connection.create_channel().await {
                Ok(channel) => {
                    let outcome = yizhan_broker::declare_tenant(&channel, &self.names, tenant).await;
                    let _ = channel.close(200, "declared".into()).await;
                    outcome.map_err(|e| e.to_string())
                }
                Err(e) => Err(format!("broker: {e}")),
            };
            match outcome {
                Ok(()) => declared.push(tenant.to_string()),
                Err(reason) => {
                    failed.insert(tenant.to_string(), reason);
                }
            }
        }
        if declared.is_empty() {
            return failed;
        }
        let registered = match &self.registry {
            Some(registry) => registry.register_tenants(&declared).await,
            None => Ok(()),
        };
        match registered {
            Ok(()) => {
                tracing::info!(tenants = ?declared, "tenant queues declared and the tenants registered");
                self.ready.lock().expect("tenants lock").extend(declared);
            }
            Err(e) => {
                for tenant in declared {
                    failed.insert(tenant, format!("registering it in the state store: {e}"));
                }
            }
        }
        failed
    }
}
