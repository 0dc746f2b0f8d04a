//! The YAML as written: serde structures that mirror the file, each value with its line
//! and column, before any check beyond its type.
//!
//! Every map refuses unknown keys. Values that take more than one shape (a name or a map,
//! a string or a list, a count or a percentage) have hand-written visitors, so that an
//! error points at the value itself and says which shapes are accepted.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use mwdeploy_core::plan::{FailureBudget, OnFailure, OnUnknown, StageSize};
use mwdeploy_core::Layout;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// A value with where it was written.
pub(super) type S<T> = Spanned<T>;

/// `Some(None)` for an explicit `null`, `None` for a missing key (with `#[serde(default)]`).
pub(super) fn explicit<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) deploy_user: Option<S<String>>,
    #[serde(default, deserialize_with = "explicit")]
    pub(super) ssh_identity: Option<Option<S<String>>>,
    pub(super) ssh_port: Option<S<Num>>,
    pub(super) ssh_options: Option<Vec<S<String>>>,
    pub(super) remote_sudo: Option<bool>,
    pub(super) staging_path: Option<S<String>>,
    pub(super) prod_path: Option<S<String>>,
    pub(super) canary_vhost: Option<S<String>>,
    pub(super) log_file: Option<S<String>>,
    pub(super) backup_path: Option<S<IgnoredAny>>,
    pub(super) state_dir: Option<S<String>>,
    pub(super) journal_keep: Option<S<Num>>,
    pub(super) metrics_file: Option<S<String>>,
    pub(super) haproxy_backend: Option<S<Names>>,
    pub(super) haproxy_socket: Option<S<String>>,
    #[serde(default, deserialize_with = "explicit")]
    pub(super) git_user: Option<Option<S<String>>>,
    pub(super) release_layout: Option<S<Layout>>,
    pub(super) releases_dir: Option<S<String>>,
    pub(super) keep_releases: Option<S<Num>>,
    pub(super) shared_dirs: Option<Vec<S<String>>>,
    pub(super) excludes: Option<Vec<S<String>>>,
    pub(super) chown: Option<S<String>>,
    pub(super) compress: Option<bool>,
    pub(super) canary: Option<RawCanary>,
    pub(super) rollout: Option<RawRollout>,
    pub(super) hooks: Option<RawHooks>,
    #[serde(default, deserialize_with = "explicit")]
    pub(super) l10n_command: Option<Option<S<Vec<String>>>>,
    pub(super) mw_servers: Option<S<Vec<S<ServerEntry>>>>,
    pub(super) proxy_servers: Option<Vec<S<ProxyEntry>>>,
    pub(super) staging: Option<RawStaging>,
    pub(super) webhooks: Option<RawWebhooks>,
}

/// `canary:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCanary {
    pub(super) url: Option<S<Names>>,
    pub(super) expect_status: Option<S<Num>>,
    #[serde(default, deserialize_with = "explicit")]
    pub(super) expect_body: Option<Option<S<String>>>,
    pub(super) timeout: Option<S<Dur>>,
    pub(super) attempts: Option<S<Num>>,
    pub(super) retry_pause: Option<S<Dur>>,
    pub(super) follow_redirects: Option<bool>,
    pub(super) error_gate: Option<S<RawErrorGate>>,
}

/// `canary.error_gate:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawErrorGate {
    pub(super) log_file: S<String>,
    pub(super) pattern: S<String>,
    pub(super) threshold: Option<S<Num>>,
    pub(super) window: Option<S<Dur>>,
    pub(super) on_unknown: Option<OnUnknown>,
}

/// `rollout:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRollout {
    pub(super) parallel: Option<S<Num>>,
    pub(super) max_unavailable: Option<S<Num>>,
    pub(super) stages: Option<S<Vec<S<Stage>>>>,
    pub(super) bake: Option<S<Dur>>,
    pub(super) approve_stages: Option<bool>,
    pub(super) failure_budget: Option<S<Budget>>,
    pub(super) on_failure: Option<OnFailure>,
    pub(super) drain_timeout: Option<S<Dur>>,
    pub(super) repool_timeout: Option<S<Dur>>,
    pub(super) repool_after_check: Option<bool>,
    pub(super) room_timeout: Option<S<Dur>>,
    pub(super) copy_timeout: Option<S<Dur>>,
    pub(super) activate_timeout: Option<S<Dur>>,
    pub(super) hook_timeout: Option<S<Dur>>,
}

/// `hooks:` (global, per server, or staging's): argv lists per point.
///
/// A point that is present (even as `[]`) replaces the global hooks of that point.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHooks {
    pub(super) post_copy: Option<Vec<S<Vec<String>>>>,
    pub(super) post_activate: Option<Vec<S<Vec<String>>>>,
    pub(super) pre_depool: Option<Vec<S<Vec<String>>>>,
    pub(super) post_repool: Option<Vec<S<Vec<String>>>>,
}

/// `staging:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStaging {
    pub(super) prod_path: Option<S<String>>,
    pub(super) canary_url: Option<S<Names>>,
    pub(super) hooks: Option<RawHooks>,
}

/// `webhooks:`. Their values are secrets: no message ever quotes them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhooks {
    pub(super) discord: Option<S<String>>,
    pub(super) slack: Option<S<String>>,
}

/// One entry of `mw_servers`: a host name, or a map.
#[derive(Debug)]
pub(super) enum ServerEntry {
    /// `- mw1.example.org`
    Name(String),
    /// `- name: mw1 ...`
    Map(Box<RawServer>),
}

/// A server written as a map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) name: S<String>,
    pub(super) ssh_host: Option<S<String>>,
    pub(super) ssh_port: Option<S<Num>>,
    pub(super) local: Option<bool>,
    pub(super) prod_path: Option<S<String>>,
    pub(super) canary_url: Option<S<Names>>,
    pub(super) haproxy_server: Option<S<String>>,
    pub(super) group: Option<S<String>>,
    pub(super) hooks: Option<RawHooks>,
    pub(super) pooled: Option<bool>,
    pub(super) canary_command: Option<S<Vec<String>>>,
}

/// One entry of `proxy_servers`: a host name, or a map.
#[derive(Debug)]
pub(super) enum ProxyEntry {
    /// `- proxy1.example.org`
    Name(String),
    /// `- name: lb1 ...`
    Map(Box<RawProxy>),
}

/// A proxy written as a map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxy {
    pub(super) name: S<String>,
    pub(super) local: Option<bool>,
    pub(super) haproxy_socket: Option<S<String>>,
    pub(super) ssh_host: Option<S<String>>,
    pub(super) ssh_port: Option<S<Num>>,
}

/// Accepts a scalar name or a map whose fields make `M`.
struct NameOrMap<T, M>(PhantomData<(T, M)>, &'static str);

trait FromNameOrMap<M>: Sized {
    fn name(s: String) -> Self;
    fn map(m: M) -> Self;
}

impl FromNameOrMap<RawServer> for ServerEntry {
    fn name(s: String) -> Self {
        ServerEntry::Name(s)
    }
    fn map(m: RawServer) -> Self {
        ServerEntry::Map(Box::new(m))
    }
}

impl FromNameOrMap<RawProxy> for ProxyEntry {
    fn name(s: String) -> Self {
        ProxyEntry::Name(s)
    }
    fn map(m: RawProxy) -> Self {
        ProxyEntry::Map(Box::new(m))
    }
}

impl<'de, T, M> Visitor<'de> for NameOrMap<T, M>
where
    T: FromNameOrMap<M>,
    M: Deserialize<'de>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Ok(T::name(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Ok(T::name(v.to_string()))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        M::deserialize(MapAccessDeserializer::new(map)).map(T::map)
    }
}

impl<'de> Deserialize<'de> for ServerEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NameOrMap::<ServerEntry, RawServer>(
            PhantomData,
            "a server name, or a map with at least `name`",
        ))
    }
}

impl<'de> Deserialize<'de> for ProxyEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NameOrMap::<ProxyEntry, RawProxy>(
            PhantomData,
            "a proxy name, or a map with at least `name`",
        ))
    }
}

/// A string, or a list of strings (`haproxy_backend`, `canary.url`, `canary_url`).
#[derive(Debug)]
pub(super) enum Names {
    /// A single string (its place is the `Spanned` around it).
    One(String),
    /// A list, each item with its own place.
    Many(Vec<S<String>>),
}

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Names;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Names, E> {
                Ok(Names::One(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Names, E> {
                Ok(Names::One(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Names, A::Error> {
                Vec::<S<String>>::deserialize(SeqAccessDeserializer::new(seq)).map(Names::Many)
            }
        }
        d.deserialize_any(V)
    }
}

/// A whole number, with messages that say so (`parallel: abc`, `ssh_port: -1`).
///
/// Ranges are checked later, with the key's name.
#[derive(Debug, Clone, Copy)]
pub(super) struct Num(pub(super) u64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                u64::try_from(v)
                    .map(Num)
                    .map_err(|_| E::custom(format!("expected a whole number, got {v} (negative)")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
                Err(E::custom(format!("expected a whole number, got {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
                v.trim()
                    .parse()
                    .map(Num)
                    .map_err(|_| E::custom(format!("expected a whole number, got {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A humantime duration: `15s`, `1m 30s`, `500ms`, `0s`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dur(pub(super) Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like \"15s\" or \"1m 30s\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: write \"{v}s\" (or ms, m, h)"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "expected a duration like \"15s\" or \"1m 30s\", got {v}"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "expected a duration like \"15s\" or \"1m 30s\", got {v}"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                humantime::parse_duration(v.trim()).map(Dur).map_err(|e| {
                    E::custom(format!(
                        "bad duration {v:?} ({e}): expected a duration like \"15s\" or \"1m 30s\""
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// One entry of `rollout.stages`: `1`, `"10%"` or `"group:NAME"`, checked for range.
#[derive(Debug, Clone)]
pub(super) struct Stage(pub(super) StageSize);

/// Checks a stage's range: a count of at least 1, a percentage within 1..=100.
pub fn check_stage(s: StageSize) -> Result<StageSize, String> {
    match s {
        StageSize::Count(0) => Err("a stage of 0 servers would never end; use at least 1".into()),
        StageSize::Percent(p) if p == 0 || p > 100 => Err(format!(
            "stage \"{p}%\" is out of range: a percentage is within 1%..=100%"
        )),
        s => Ok(s),
    }
}

impl<'de> Deserialize<'de> for Stage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Stage;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a count (1), a percentage (\"10%\") or \"group:NAME\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Stage, E> {
                let n =
                    u32::try_from(v).map_err(|_| E::custom(format!("stage {v} is too large")))?;
                check_stage(StageSize::Count(n))
                    .map(Stage)
                    .map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Stage, E> {
                Err(E::custom(format!("stage {v}: a count is at least 1")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Stage, E> {
                v.parse::<StageSize>()
                    .and_then(check_stage)
                    .map(Stage)
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// `rollout.failure_budget`: `2` or `"5%"`, the percentage within 0..=100.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget(pub(super) FailureBudget);

/// Checks a failure budget's percentage.
pub fn check_budget(b: FailureBudget) -> Result<FailureBudget, String> {
    match b {
        FailureBudget::Percent(p) if p > 100 => Err(format!(
            "failure budget \"{p}%\" is out of range: a percentage is within 0%..=100%"
        )),
        b => Ok(b),
    }
}

impl<'de> Deserialize<'de> for Budget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Budget;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a count (2) or a percentage (\"5%\")")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Budget, E> {
                u32::try_from(v)
                    .map(|n| Budget(FailureBudget::Count(n)))
                    .map_err(|_| E::custom(format!("failure budget {v} is too large")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Budget, E> {
                Err(E::custom(format!(
                    "failure budget {v}: expected a count of 0 or more"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Budget, E> {
                v.parse::<FailureBudget>()
                    .and_then(check_budget)
                    .map(Budget)
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}
