//! From the YAML as written to a checked [`Config`]: defaults, names, URLs, ranges, paths.
//!
//! Every problem is collected (with the key and its place) rather than stopping at the
//! first, so an operator fixes a config in one round.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use mwdeploy_core::model::{validate_name, CanaryTarget, HookPoint};
use mwdeploy_core::plan::{FailureBudget, OnFailure, OnUnknown, StageSize};
use mwdeploy_core::{Layout, ServerId};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

use super::raw::{
    Dur, Names, Num, ProxyEntry, RawCanary, RawConfig, RawHooks, RawProxy, RawRollout, RawServer,
    RawStaging, RawWebhooks, ServerEntry, S,
};
use super::{
    CanaryConfig, Config, Diagnostic, ErrorGateConfig, Hooks, Loc, ProxyConfig, RolloutConfig,
    Secret, ServerConfig, StagingConfig, Webhooks,
};

/// The longest name accepted (a DNS name's limit).
const NAME_MAX: usize = 253;

/// The placeholders hooks, `canary_command` and `l10n_command` may hold.
pub(crate) const PLACEHOLDERS: [&str; 4] = ["server", "release", "release_path", "prod_path"];

/// The old tool's fixed canary URL.
const DEFAULT_CANARY_URL: &str = "http://127.0.0.1/wiki/Main_Page";

/// Parses and checks `text`, the contents of `file`.
pub(super) fn parse(text: &str, file: &Path) -> Result<Config, Vec<Diagnostic>> {
    let raw = parse_yaml(text, file)?;
    let base = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let mut c = Checker {
        file,
        base,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    match (c.config(raw), c.errors.is_empty()) {
        (Some(mut config), true) => {
            config.warnings = c.warnings;
            Ok(config)
        }
        (None, true) => {
            // Every refusal records an error; this is a bug, but not a reason to panic.
            c.error(
                None,
                "config",
                "incomplete (an internal error: please report it)",
            );
            Err(c.errors)
        }
        (_, false) => Err(c.errors),
    }
}

/// The YAML into [`RawConfig`]; an error names the key path and its place.
fn parse_yaml(text: &str, file: &Path) -> Result<RawConfig, Vec<Diagnostic>> {
    let mut path = String::new();
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize::<_, Option<RawConfig>>(de).map_err(|e| {
            path = key_path(e.path());
            e.into_inner()
        })
    });
    match parsed {
        Ok(raw) => Ok(raw.unwrap_or_default()),
        Err(e) => {
            let at = e.location().and_then(Loc::of);
            let message = UserMessageFormatter.format_message(original(&e));
            Err(vec![Diagnostic {
                file: file.to_path_buf(),
                at,
                message: yaml_message(&path, &message),
            }])
        }
    }
}

/// The error under alias and snippet wrappers.
fn original(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = e
    {
        e = error;
    }
    e
}

/// `mw_servers[1].canary_url`: the path as an operator writes it (the `value` of each
/// span wrapper left out).
fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if key == "value" => {}
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

/// A parser message made to name the key and say what is accepted.
fn yaml_message(path: &str, message: &str) -> String {
    let message = clean(message);
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // The path ends with the unknown key itself: name the map it is in.
        let key = rest.split('`').next().unwrap_or_default();
        let known: Vec<&str> = rest
            .split_once("expected ")
            .map(|(_, list)| {
                list.trim_start_matches("one of ")
                    .split(", ")
                    .map(|k| k.trim().trim_matches('`'))
                    .filter(|k| !k.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let parent = path
            .strip_suffix(key)
            .map(|p| p.trim_end_matches('.'))
            .unwrap_or(path);
        let hint = match closest(key, &known) {
            Some(k) => format!(" (did you mean `{k}`?)"),
            None if known.is_empty() => String::new(),
            None => format!("; the keys here are: {}", known.join(", ")),
        };
        let where_ = if parent.is_empty() {
            "the top level".to_string()
        } else {
            format!("`{parent}`")
        };
        return format!("unknown key `{key}` in {where_}{hint}");
    }
    let mut message = message
        .replace("missing field", "missing key")
        .replace("expected sequence start", "expected a list")
        .replace("expected mapping start", "expected a map of keys")
        .replace("struct RawConfig", "a map of config keys")
        .replace("struct RawServer", "a map")
        .replace("struct RawProxy", "a map");
    if path.contains("hooks.") && message.contains("expected a list") {
        message.push_str(
            "; each hook is an argv list, e.g. post_activate: [[\"sudo\", \"systemctl\", \"reload\", \"php8.2-fpm\"]]",
        );
    }
    if path.is_empty() {
        message
    } else {
        format!("{path}: {message}")
    }
}

/// The known key nearest to `key`, if it looks like a typo of it.
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Text with control characters escaped, so a message cannot drive the terminal.
pub(crate) fn clean(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_debug().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn at<T>(s: &Spanned<T>) -> Option<Loc> {
    Loc::of(s.referenced)
}

/// `s` with the place of `like`.
fn spanned_like<T, U>(value: T, like: &Spanned<U>) -> Spanned<T> {
    Spanned::new(value, like.referenced, like.defined)
}

/// A path and where it was written.
#[derive(Clone)]
struct PathSpec {
    text: String,
    key: String,
    at: Option<Loc>,
}

/// What [`Checker::ssh`] found (`None` where refused).
struct Ssh {
    deploy_user: Option<String>,
    identity: Option<PathBuf>,
    port: Option<u16>,
    options: Vec<String>,
}

/// What [`Checker::paths`] found: `prod_path` only as written, as each host checks it.
struct Paths {
    staging: Option<PathBuf>,
    staging_at: Option<Loc>,
    prod: Option<PathSpec>,
    log_file: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    metrics_file: Option<PathBuf>,
}

/// What [`Checker::release_layout`] found, and where the layout was written.
struct ReleaseLayout {
    layout: Layout,
    at: Option<Loc>,
    keep_releases: u32,
    shared_dirs: Vec<String>,
}

struct Checker<'a> {
    file: &'a Path,
    base: PathBuf,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, at: Option<Loc>, key: &str, message: impl fmt::Display) {
        self.errors.push(Diagnostic {
            file: self.file.to_path_buf(),
            at,
            message: clean(&format!("{key}: {message}")),
        });
    }

    fn warn(&mut self, at: Option<Loc>, key: &str, message: impl fmt::Display) {
        self.warnings.push(Diagnostic {
            file: self.file.to_path_buf(),
            at,
            message: clean(&format!("{key}: {message}")),
        });
    }

    /// A name per core's rules: `[A-Za-z0-9._-]`, not starting with `-` or `.`, no `..`.
    fn name(&mut self, key: &str, what: &'static str, v: &str, at: Option<Loc>) -> Option<String> {
        match validate_name(what, v, NAME_MAX) {
            Ok(()) => Some(v.to_string()),
            Err(e) => {
                self.error(at, key, e);
                None
            }
        }
    }

    fn id(&mut self, key: &str, what: &'static str, v: &str, at: Option<Loc>) -> Option<ServerId> {
        self.name(key, what, v, at)
            .and_then(|n| ServerId::new(&n).ok())
    }

    /// Text without control characters.
    fn text(&mut self, key: &str, v: &S<String>) -> Option<String> {
        if v.value.chars().any(char::is_control) {
            self.error(at(v), key, "contains a control character");
            return None;
        }
        Some(v.value.clone())
    }

    fn spec(key: &str, v: &S<String>) -> PathSpec {
        PathSpec {
            text: v.value.clone(),
            key: key.to_string(),
            at: at(v),
        }
    }

    /// A path: on the deploy host (`local`) resolved against the config's folder when
    /// relative; elsewhere (`whose` names the host) it must be absolute.
    fn path(&mut self, p: &PathSpec, local: bool, whose: &str) -> Option<PathBuf> {
        if p.text.is_empty() {
            self.error(p.at, &p.key, "is empty; give a path");
            return None;
        }
        if p.text.chars().any(char::is_control) {
            self.error(p.at, &p.key, "contains a control character");
            return None;
        }
        let path = Path::new(&p.text);
        if path.is_absolute() {
            Some(path.to_path_buf())
        } else if local {
            Some(self.base.join(path))
        } else {
            self.error(
                p.at,
                &p.key,
                format!(
                    "{:?} is relative, but it is a path on {whose}: write it in full \
                     (the config's folder means nothing there)",
                    p.text
                ),
            );
            None
        }
    }

    /// An `http://` or `https://` URL. A `secret` one is never quoted.
    fn url(&mut self, key: &str, v: &str, at: Option<Loc>, secret: bool) -> Option<String> {
        let rest = v
            .strip_prefix("http://")
            .or_else(|| v.strip_prefix("https://"));
        let problem = match rest {
            None => Some("must start with http:// or https://"),
            Some("") => Some("has no host after the scheme"),
            Some(r) if r.starts_with('/') => Some("has no host after the scheme"),
            Some(_) if v.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                Some("contains a space or a control character")
            }
            Some(_) => None,
        };
        match problem {
            None => Some(v.to_string()),
            Some(p) if secret => {
                self.error(
                    at,
                    key,
                    format!("not a valid URL: it {p} (the value is not shown: it is a secret)"),
                );
                None
            }
            Some(p) => {
                self.error(at, key, format!("{v:?} is not a valid URL: it {p}"));
                None
            }
        }
    }

    fn urls(&mut self, key: &str, v: &S<Names>) -> Option<Vec<String>> {
        let items: Vec<(String, Option<Loc>)> = match &v.value {
            Names::One(s) => vec![(s.clone(), at(v))],
            Names::Many(list) => list
                .iter()
                .map(|s| (s.value.clone(), at(s).or(at(v))))
                .collect(),
        };
        if items.is_empty() {
            self.error(at(v), key, "is empty; give at least one URL");
            return None;
        }
        let n = items.len();
        let out: Vec<String> = items
            .into_iter()
            .enumerate()
            .filter_map(|(i, (u, l))| {
                let k = if n > 1 || matches!(v.value, Names::Many(_)) {
                    format!("{key}[{i}]")
                } else {
                    key.to_string()
                };
                self.url(&k, &u, l, false)
            })
            .collect();
        (out.len() == n).then_some(out)
    }

    /// A whole number within `min..=max`; `why` says why below `min` is refused.
    fn num(&mut self, key: &str, v: &S<Num>, min: u64, max: u64, why: &str) -> Option<u64> {
        let n = v.value.0;
        if n < min {
            self.error(at(v), key, format!("{n} is too small: {why}"));
            None
        } else if n > max {
            self.error(at(v), key, format!("{n} is out of range {min}..={max}"));
            None
        } else {
            Some(n)
        }
    }

    fn num_or(
        &mut self,
        key: &str,
        v: Option<&S<Num>>,
        default: u64,
        min: u64,
        max: u64,
        why: &str,
    ) -> u64 {
        match v {
            Some(v) => self.num(key, v, min, max, why).unwrap_or(default),
            None => default,
        }
    }

    fn port(&mut self, key: &str, v: Option<&S<Num>>) -> Option<u16> {
        let v = v?;
        self.num(key, v, 1, u64::from(u16::MAX), "a port is at least 1")
            .map(|n| n as u16)
    }

    /// A duration, refused when zero if `positive`.
    fn dur(
        &mut self,
        key: &str,
        v: Option<&S<Dur>>,
        default: Duration,
        positive: bool,
    ) -> Duration {
        match v {
            Some(d) if positive && d.value.0.is_zero() => {
                self.error(at(d), key, "must be longer than 0s");
                default
            }
            Some(d) => d.value.0,
            None => default,
        }
    }

    /// An argv: at least a program, no NUL, placeholders known.
    fn argv(&mut self, key: &str, argv: &[String], at: Option<Loc>) -> Option<Vec<String>> {
        if argv.first().is_none_or(|p| p.trim().is_empty()) {
            self.error(at, key, "an argv list needs at least a program, e.g. [\"sudo\", \"systemctl\", \"reload\", \"php8.2-fpm\"]");
            return None;
        }
        let mut ok = true;
        for (i, arg) in argv.iter().enumerate() {
            if arg.contains('\0') {
                self.error(at, &format!("{key}[{i}]"), "contains a NUL byte");
                ok = false;
            }
            for p in placeholders(arg) {
                if !PLACEHOLDERS.contains(&p) {
                    self.error(
                        at,
                        &format!("{key}[{i}]"),
                        format!(
                            "unknown placeholder {{{p}}}; the known ones are {{server}} {{release}} \
                             {{release_path}} {{prod_path}}"
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then(|| argv.to_vec())
    }

    /// Each point of `raw` that is present: its argv lists.
    fn hooks(&mut self, key: &str, raw: &RawHooks) -> Vec<(HookPoint, Vec<Vec<String>>)> {
        let points = [
            (HookPoint::PostCopy, &raw.post_copy),
            (HookPoint::PostActivate, &raw.post_activate),
            (HookPoint::PreDepool, &raw.pre_depool),
            (HookPoint::PostRepool, &raw.post_repool),
        ];
        let mut out = Vec::new();
        for (point, lists) in points {
            let Some(lists) = lists else { continue };
            let k = format!("{key}.{point}");
            let checked: Vec<Vec<String>> = lists
                .iter()
                .enumerate()
                .filter_map(|(i, argv)| self.argv(&format!("{k}[{i}]"), &argv.value, at(argv)))
                .collect();
            out.push((point, checked));
        }
        out
    }

    /// `haproxy_backend`: one name or a list, each a valid name, none twice
    /// (`mediawiki` when missing).
    fn backends(&mut self, b: Option<&S<Names>>) -> Option<Vec<String>> {
        let Some(b) = b else {
            return Some(vec!["mediawiki".to_string()]);
        };
        let items: Vec<(String, Option<Loc>)> = match &b.value {
            Names::One(s) => vec![(s.clone(), at(b))],
            Names::Many(l) => l
                .iter()
                .map(|s| (s.value.clone(), at(s).or(at(b))))
                .collect(),
        };
        if items.is_empty() {
            self.error(
                at(b),
                "haproxy_backend",
                "is empty; give the backend the servers are in",
            );
        }
        let mut seen = BTreeSet::new();
        let mut ok = true;
        let mut out = Vec::new();
        for (name, l) in items {
            match self.name("haproxy_backend", "backend", &name, l) {
                Some(n) if !seen.insert(n.clone()) => {
                    self.error(
                        l,
                        "haproxy_backend",
                        format!("backend {n:?} is listed twice"),
                    );
                    ok = false;
                }
                Some(n) => out.push(n),
                None => ok = false,
            }
        }
        (ok && !out.is_empty()).then_some(out)
    }

    /// `staging:`: staging's own live tree, canary URLs and hooks (each the fleet's
    /// when not given).
    fn staging(
        &mut self,
        rs: &RawStaging,
        prod_spec: Option<&PathSpec>,
        canary_urls: Option<Vec<String>>,
        global_hooks: &Hooks,
    ) -> (Option<PathBuf>, Option<Vec<String>>, Hooks) {
        let staging_prod = match (&rs.prod_path, prod_spec) {
            (Some(p), _) => self.path(&Self::spec("staging.prod_path", p), true, "the deploy host"),
            (None, Some(p)) => self.path(p, true, "the deploy host"),
            (None, None) => None,
        };
        let staging_urls = match &rs.canary_url {
            Some(u) => self.urls("staging.canary_url", u),
            None => canary_urls,
        };
        let mut staging_hooks = global_hooks.clone();
        if let Some(h) = &rs.hooks {
            for (point, lists) in self.hooks("staging.hooks", h) {
                *staging_hooks.at_mut(point) = lists;
            }
        }
        (staging_prod, staging_urls, staging_hooks)
    }

    /// `ssh_options`: each `Key=Value`, nothing that could pass another option.
    fn ssh_options(&mut self, options: Option<&[S<String>]>) -> Vec<String> {
        let mut ssh_options = Vec::new();
        for (i, o) in options.unwrap_or_default().iter().enumerate() {
            let key = format!("ssh_options[{i}]");
            match o.value.split_once('=') {
                Some((k, v))
                    if !k.is_empty()
                        && k.chars().all(|c| c.is_ascii_alphanumeric())
                        && !v.is_empty()
                        && !o.value.chars().any(char::is_control) =>
                {
                    ssh_options.push(o.value.clone())
                }
                _ => self.error(
                    at(o),
                    &key,
                    format!("{:?} is not an ssh option: write Key=Value, e.g. \"StrictHostKeyChecking=yes\"", o.value),
                ),
            }
        }
        ssh_options
    }

    /// `canary_vhost`: a host name, with a port after `:` when given.
    fn canary_vhost(&mut self, v: &S<String>) -> Option<String> {
        let (host, port) = match v.value.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (v.value.as_str(), None),
        };
        let host = self.name("canary_vhost", "canary_vhost host", host, at(v))?;
        match port {
            Some(p) if p.parse::<u16>().is_err() => {
                self.error(
                    at(v),
                    "canary_vhost",
                    format!("{:?}: the port after ':' is not a number", v.value),
                );
                None
            }
            _ => Some(if port.is_some() {
                v.value.clone()
            } else {
                host
            }),
        }
    }

    /// `canary:`: the page check's URLs, status, body, timeouts and attempts, and the
    /// error gate.
    fn canary(&mut self, rc: &RawCanary) -> Option<CanaryConfig> {
        let canary_urls = match &rc.url {
            Some(u) => self.urls("canary.url", u),
            None => Some(vec![DEFAULT_CANARY_URL.to_string()]),
        };
        let expect_status = self.num_or(
            "canary.expect_status",
            rc.expect_status.as_ref(),
            200,
            100,
            599,
            "an HTTP status is within 100..=599",
        ) as u16;
        let expect_body = match &rc.expect_body {
            None => Some("wikioasis".to_string()),
            Some(None) => None,
            Some(Some(b)) if b.value.is_empty() => None,
            Some(Some(b)) => self.text("canary.expect_body", b),
        };
        let timeout = self.dur(
            "canary.timeout",
            rc.timeout.as_ref(),
            Duration::from_secs(15),
            true,
        );
        let attempts = self.num_or(
            "canary.attempts",
            rc.attempts.as_ref(),
            3,
            1,
            1000,
            "a canary needs at least 1 attempt",
        ) as u32;
        let retry_pause = self.dur(
            "canary.retry_pause",
            rc.retry_pause.as_ref(),
            Duration::from_secs(3),
            false,
        );
        let error_gate = rc.error_gate.as_ref().and_then(|g| {
            let g = &g.value;
            let log_file = self.path(
                &Self::spec("canary.error_gate.log_file", &g.log_file),
                false,
                "every server",
            );
            let pattern = if g.pattern.value.is_empty() {
                self.error(
                    at(&g.pattern),
                    "canary.error_gate.pattern",
                    "is empty: it would count every line",
                );
                None
            } else {
                self.text("canary.error_gate.pattern", &g.pattern)
            };
            let threshold = self.num_or(
                "canary.error_gate.threshold",
                g.threshold.as_ref(),
                10,
                1,
                u64::from(u32::MAX),
                "0 would fail every server",
            ) as u32;
            let window = self.dur(
                "canary.error_gate.window",
                g.window.as_ref(),
                Duration::from_secs(20),
                true,
            );
            Some(ErrorGateConfig {
                log_file: log_file?,
                pattern: pattern?,
                threshold,
                window,
                on_unknown: g.on_unknown.unwrap_or(OnUnknown::Fail),
            })
        });
        Some(CanaryConfig {
            urls: canary_urls?,
            expect_status,
            expect_body,
            timeout,
            attempts,
            retry_pause,
            follow_redirects: rc.follow_redirects.unwrap_or(false),
            error_gate,
        })
    }

    /// `rollout:`: parallelism, `max_unavailable`, stages, the failure budget and the
    /// step timeouts; and where the stages are (for the check against the groups).
    fn rollout(&mut self, rr: &RawRollout) -> (RolloutConfig, Option<Loc>) {
        let parallel = self.num_or(
            "rollout.parallel",
            rr.parallel.as_ref(),
            1,
            1,
            u64::from(u32::MAX),
            "with 0 in flight no server would ever start",
        ) as u32;
        let max_unavailable = self.num_or(
            "rollout.max_unavailable",
            rr.max_unavailable.as_ref(),
            1,
            0,
            u64::from(u32::MAX),
            "",
        ) as u32;
        let max_unavailable_at = rr.max_unavailable.as_ref().and_then(at);
        let stages_at = rr.stages.as_ref().and_then(at);
        let stages: Vec<StageSize> = match &rr.stages {
            None => vec![StageSize::Percent(100)],
            Some(s) => s.value.iter().map(|x| x.value.0.clone()).collect(),
        };
        if stages.is_empty() {
            self.error(
                stages_at,
                "rollout.stages",
                "is empty; give at least one stage, e.g. [\"100%\"]",
            );
        }
        let groups = stages
            .iter()
            .filter(|s| matches!(s, StageSize::Group(_)))
            .count();
        if groups != 0 && groups != stages.len() {
            self.error(
                stages_at,
                "rollout.stages",
                "mixes groups with counts or percentages; use one kind",
            );
        }
        let bake = self.dur("rollout.bake", rr.bake.as_ref(), Duration::ZERO, false);
        let failure_budget = rr
            .failure_budget
            .as_ref()
            .map(|b| b.value.0)
            .unwrap_or(FailureBudget::Count(0));
        let drain_timeout = self.dur(
            "rollout.drain_timeout",
            rr.drain_timeout.as_ref(),
            Duration::from_secs(30),
            true,
        );
        let repool_timeout = self.dur(
            "rollout.repool_timeout",
            rr.repool_timeout.as_ref(),
            Duration::from_secs(30),
            true,
        );
        let room_timeout = self.dur(
            "rollout.room_timeout",
            rr.room_timeout.as_ref(),
            Duration::from_secs(60),
            true,
        );
        // The engine's own defaults when missing (StepTimeouts::default()).
        let engine = mwdeploy_core::plan::StepTimeouts::default();
        let copy_timeout = self.dur(
            "rollout.copy_timeout",
            rr.copy_timeout.as_ref(),
            engine.copy,
            true,
        );
        let activate_timeout = self.dur(
            "rollout.activate_timeout",
            rr.activate_timeout.as_ref(),
            engine.activate,
            true,
        );
        let hook_timeout = self.dur(
            "rollout.hook_timeout",
            rr.hook_timeout.as_ref(),
            engine.hook,
            true,
        );
        let rollout = RolloutConfig {
            parallel,
            max_unavailable,
            max_unavailable_at,
            stages,
            bake,
            approve_stages: rr.approve_stages.unwrap_or(false),
            failure_budget,
            on_failure: rr.on_failure.unwrap_or(OnFailure::Prompt),
            drain_timeout,
            repool_timeout,
            repool_after_check: rr.repool_after_check.unwrap_or(true),
            room_timeout,
            copy_timeout,
            activate_timeout,
            hook_timeout,
        };
        (rollout, stages_at)
    }

    /// `webhooks:`: each URL checked, kept as a secret.
    fn webhooks(&mut self, rw: &RawWebhooks) -> Option<Webhooks> {
        let mut webhook = |key: &str, v: &Option<S<String>>| -> Option<Option<Secret>> {
            match v {
                Some(u) if !u.value.trim().is_empty() => self
                    .url(key, u.value.trim(), at(u), true)
                    .map(|u| Some(Secret(u))),
                _ => Some(None),
            }
        };
        let discord = webhook("webhooks.discord", &rw.discord);
        let slack = webhook("webhooks.slack", &rw.slack);
        Some(Webhooks {
            discord: discord?,
            slack: slack?,
        })
    }

    /// The whole config, step by step; every step's problems are collected before refusing.
    fn config(&mut self, mut raw: RawConfig) -> Option<Config> {
        let ssh = self.ssh(&raw);
        let paths = self.paths(&raw);
        let journal_keep = self.journal_keep(raw.journal_keep.as_ref());
        let canary_vhost = raw.canary_vhost.as_ref().and_then(|v| self.canary_vhost(v));
        let haproxy_backends = self.backends(raw.haproxy_backend.as_ref());
        let socket_spec = Self::haproxy_socket(raw.haproxy_socket.as_ref());
        let git_user = self.git_user(raw.git_user.as_ref());
        let layout = self.release_layout(&raw);
        let excludes = self.excludes(raw.excludes.as_deref());
        let chown = self.chown(raw.chown.as_ref());
        let canary = self.canary(&raw.canary.unwrap_or_default());
        let (rollout, stages_at) = self.rollout(&raw.rollout.unwrap_or_default());
        let global_hooks = self.global_hooks(raw.hooks.as_ref());
        let l10n_command = self.l10n_command(raw.l10n_command.as_ref());
        let servers = self.servers(
            raw.mw_servers.take(),
            paths.prod.as_ref(),
            &global_hooks,
            raw.releases_dir.as_ref(),
        );
        let proxies = self.proxies(
            raw.proxy_servers.as_deref().unwrap_or_default(),
            &socket_spec,
        );
        let canary_urls = canary.as_ref().map(|c| c.urls.clone());
        let (staging_prod, staging_urls, staging_hooks) = self.staging(
            &raw.staging.unwrap_or_default(),
            paths.prod.as_ref(),
            canary_urls,
            &global_hooks,
        );
        let webhooks = self.webhooks(&raw.webhooks.unwrap_or_default());

        // Cross checks.
        if let Some(servers) = &servers {
            self.stage_groups(&rollout.stages, stages_at, servers);
            self.layout_hooks(layout.layout, layout.at, servers, &global_hooks);
            if let (Some(staging_path), Some(staging_prod), Some(state_dir)) =
                (&paths.staging, &staging_prod, &paths.state_dir)
            {
                self.staging_apart(
                    staging_path,
                    paths.staging_at,
                    staging_prod,
                    state_dir,
                    servers,
                );
            }
        }

        Some(Config {
            file: self.file.to_path_buf(),
            deploy_user: ssh.deploy_user?,
            ssh_identity: ssh.identity,
            ssh_port: ssh.port,
            ssh_options: ssh.options,
            remote_sudo: raw.remote_sudo.unwrap_or(false),
            staging_path: paths.staging?,
            prod_path: self.path(paths.prod.as_ref()?, true, "the deploy host")?,
            canary_vhost,
            log_file: paths.log_file?,
            state_dir: paths.state_dir?,
            journal_keep,
            metrics_file: paths.metrics_file,
            haproxy_backends: haproxy_backends?,
            haproxy_socket: self.base.join(&socket_spec.text),
            git_user: git_user?,
            layout: layout.layout,
            keep_releases: layout.keep_releases,
            shared_dirs: layout.shared_dirs,
            excludes,
            chown,
            compress: raw.compress.unwrap_or(false),
            canary: canary?,
            rollout,
            hooks: global_hooks,
            l10n_command,
            servers: servers?,
            proxies: proxies?,
            staging: StagingConfig {
                prod_path: staging_prod?,
                canary_urls: staging_urls?,
                hooks: staging_hooks,
            },
            webhooks: webhooks?,
            warnings: Vec::new(),
        })
    }

    /// `deploy_user`, `ssh_identity`, `ssh_port`, `ssh_options`: how ssh reaches every host.
    fn ssh(&mut self, raw: &RawConfig) -> Ssh {
        let deploy_user = match &raw.deploy_user {
            Some(u) => self.name("deploy_user", "deploy_user", &u.value, at(u)),
            None => Some("mwdeploy".to_string()),
        };
        let identity = match &raw.ssh_identity {
            // The old tool's default.
            None => Some(PathBuf::from(format!(
                "/home/{}/.ssh/id_ed25519",
                deploy_user.as_deref().unwrap_or("mwdeploy")
            ))),
            Some(None) => None,
            Some(Some(p)) => self.path(&Self::spec("ssh_identity", p), true, "the deploy host"),
        };
        let port = self.port("ssh_port", raw.ssh_port.as_ref());
        let options = self.ssh_options(raw.ssh_options.as_deref());
        Ssh {
            deploy_user,
            identity,
            port,
            options,
        }
    }

    /// The deploy host's paths (`staging_path`, `prod_path` required); warns of `backup_path`.
    fn paths(&mut self, raw: &RawConfig) -> Paths {
        let staging = match &raw.staging_path {
            Some(p) => self.path(&Self::spec("staging_path", p), true, "the deploy host"),
            None => {
                self.error(
                    None,
                    "staging_path",
                    "missing: the staging checkout on the deploy host, e.g. /srv/mediawiki-staging",
                );
                None
            }
        };
        let prod = match &raw.prod_path {
            Some(p) => Some(Self::spec("prod_path", p)),
            None => {
                self.error(
                    None,
                    "prod_path",
                    "missing: the live tree on every server, e.g. /srv/mediawiki",
                );
                None
            }
        };
        let log_file = match &raw.log_file {
            Some(p) => self.path(&Self::spec("log_file", p), true, "the deploy host"),
            None => Some(PathBuf::from("/var/log/mwdeploy.log")),
        };
        let state_dir = match &raw.state_dir {
            Some(p) => self.path(&Self::spec("state_dir", p), true, "the deploy host"),
            None => Some(PathBuf::from("/var/lib/mwdeploy")),
        };
        let metrics_file = raw
            .metrics_file
            .as_ref()
            .and_then(|p| self.path(&Self::spec("metrics_file", p), true, "the deploy host"));
        if let Some(b) = &raw.backup_path {
            self.warn(
                at(b),
                "backup_path",
                "accepted but unused (the old tool did not use it either); remove it to silence this warning",
            );
        }
        Paths {
            staging,
            staging_at: raw.staging_path.as_ref().and_then(at),
            prod,
            log_file,
            state_dir,
            metrics_file,
        }
    }

    /// `journal_keep`: how many journals `state_dir` keeps, at least the latest.
    fn journal_keep(&mut self, v: Option<&S<Num>>) -> u32 {
        self.num_or(
            "journal_keep",
            v,
            200,
            1,
            u64::from(u32::MAX),
            "keep at least the latest journal",
        ) as u32
    }

    /// `haproxy_socket` as written, or HAProxy's default; each proxy checks it as its own path.
    fn haproxy_socket(v: Option<&S<String>>) -> PathSpec {
        match v {
            Some(p) => Self::spec("haproxy_socket", p),
            None => PathSpec {
                text: "/run/haproxy/admin.sock".into(),
                key: "haproxy_socket".into(),
                at: None,
            },
        }
    }

    /// `git_user`: a valid name to run staging's git as (`www-data` when missing, none if null).
    fn git_user(&mut self, v: Option<&Option<S<String>>>) -> Option<Option<String>> {
        match v {
            None => Some(Some("www-data".to_string())),
            Some(None) => Some(None),
            Some(Some(u)) => self.name("git_user", "git_user", &u.value, at(u)).map(Some),
        }
    }

    /// `release_layout`, `keep_releases` (enough to roll back) and `shared_dirs` (relative names).
    fn release_layout(&mut self, raw: &RawConfig) -> ReleaseLayout {
        let layout = raw
            .release_layout
            .as_ref()
            .map(|l| l.value)
            .unwrap_or_default();
        let layout_at = raw.release_layout.as_ref().and_then(at);
        let keep_releases = self.num_or(
            "keep_releases",
            raw.keep_releases.as_ref(),
            5,
            2,
            u64::from(u32::MAX),
            "keep at least 2 releases, the live one and the one to roll back to",
        ) as u32;
        let mut shared_dirs = Vec::new();
        for (i, d) in raw.shared_dirs.iter().flatten().enumerate() {
            if let Some(p) =
                self.relative_path(&format!("shared_dirs[{i}]"), "shared dir", &d.value, at(d))
            {
                shared_dirs.push(p);
            }
        }
        ReleaseLayout {
            layout,
            at: layout_at,
            keep_releases,
            shared_dirs,
        }
    }

    /// `excludes`: rsync excludes, none empty (`/.git/` and `/cache/` when missing).
    fn excludes(&mut self, v: Option<&[S<String>]>) -> Vec<String> {
        match v {
            None => vec!["/.git/".to_string(), "/cache/".to_string()],
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(i, e)| {
                    let key = format!("excludes[{i}]");
                    if e.value.trim().is_empty() {
                        self.error(at(e), &key, "is empty");
                        return None;
                    }
                    self.text(&key, e)
                })
                .collect(),
        }
    }

    /// `chown`: rsync's `user:group`, either part left out but not both, each a valid name.
    fn chown(&mut self, v: Option<&S<String>>) -> Option<String> {
        let c = v?;
        let (user, group) = c.value.split_once(':').unwrap_or((c.value.as_str(), ""));
        if user.is_empty() && group.is_empty() {
            self.error(at(c), "chown", "is empty; write \"user:group\", or null");
            return None;
        }
        let u = user.is_empty() || self.name("chown", "chown user", user, at(c)).is_some();
        let g = group.is_empty() || self.name("chown", "chown group", group, at(c)).is_some();
        (u && g).then(|| c.value.clone())
    }

    /// `hooks:`: the fleet's hooks, which a server's or staging's own replace point by point.
    fn global_hooks(&mut self, raw: Option<&RawHooks>) -> Hooks {
        let mut global_hooks = Hooks::default();
        if let Some(h) = raw {
            for (point, lists) in self.hooks("hooks", h) {
                *global_hooks.at_mut(point) = lists;
            }
        }
        global_hooks
    }

    /// `l10n_command`: the localisation cache rebuild's argv (null: none, so `--l10n` cannot run).
    fn l10n_command(&mut self, v: Option<&Option<S<Vec<String>>>>) -> Option<Vec<String>> {
        match v {
            None => Some(
                [
                    "sudo",
                    "-u",
                    "www-data",
                    "php",
                    "{prod_path}/scripts/mwscript.php",
                    "rebuildLocalisationCache",
                    "--wiki",
                    "testwiki",
                ]
                .map(String::from)
                .to_vec(),
            ),
            Some(None) => None,
            Some(Some(argv)) => {
                if argv.value.is_empty() {
                    self.error(
                        at(argv),
                        "l10n_command",
                        "is empty; write null to have none (then --l10n cannot run)",
                    );
                    None
                } else {
                    self.argv("l10n_command", &argv.value, at(argv))
                }
            }
        }
    }

    /// A path inside the tree: names separated by `/`.
    fn relative_path(
        &mut self,
        key: &str,
        what: &'static str,
        v: &str,
        at: Option<Loc>,
    ) -> Option<String> {
        if v.is_empty() || v.starts_with('/') || v.ends_with('/') || v.contains("//") {
            self.error(at, key, format!("{v:?}: expected names separated by '/', relative to the tree's top, e.g. \"images\""));
            return None;
        }
        let ok = v
            .split('/')
            .all(|part| self.name(key, what, part, at).is_some());
        ok.then(|| v.to_string())
    }

    fn servers(
        &mut self,
        list: Option<S<Vec<S<ServerEntry>>>>,
        prod: Option<&PathSpec>,
        global_hooks: &Hooks,
        releases_dir: Option<&S<String>>,
    ) -> Option<Vec<ServerConfig>> {
        let Some(list) = list else {
            self.error(None, "mw_servers", "missing: list the servers to deploy to");
            return None;
        };
        if list.value.is_empty() {
            self.error(
                at(&list),
                "mw_servers",
                "is empty: list the servers to deploy to",
            );
            return None;
        }
        let mut out: Vec<ServerConfig> = Vec::with_capacity(list.value.len());
        let mut ok = true;
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut backend_names: HashMap<String, String> = HashMap::new();
        for (i, entry) in list.value.into_iter().enumerate() {
            let key = format!("mw_servers[{i}]");
            let entry_at = at(&entry);
            let (name, raw) = match entry.value {
                ServerEntry::Name(n) => (Spanned::new(n, entry.referenced, entry.defined), None),
                ServerEntry::Map(m) => {
                    let m = *m;
                    (clone_s(&m.name), Some(m))
                }
            };
            let name_at = at(&name);
            let Some(s) = self.server(&key, name, raw, entry_at, prod, global_hooks, releases_dir)
            else {
                ok = false;
                continue;
            };
            let duplicate = names.get(s.name.as_str()).copied();
            names.entry(s.name.to_string()).or_insert(i);
            if let Some(first) = duplicate {
                self.error(
                    name_at,
                    &key,
                    format!(
                        "server {:?} is listed twice (also mw_servers[{first}])",
                        s.name.as_str()
                    ),
                );
                ok = false;
            } else if s.pooled {
                let b = s.haproxy_server.as_ref().unwrap_or(&s.name).to_string();
                if let Some(other) = backend_names.insert(b.clone(), s.name.to_string()) {
                    self.error(
                        entry_at,
                        &key,
                        format!(
                            "servers {other:?} and {:?} have the same name in the backend, {b:?}: \
                             a depool of one would take out the other",
                            s.name.as_str()
                        ),
                    );
                    ok = false;
                }
            }
            out.push(s);
        }
        ok.then_some(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn server(
        &mut self,
        key: &str,
        name: S<String>,
        raw: Option<RawServer>,
        entry_at: Option<Loc>,
        prod: Option<&PathSpec>,
        global_hooks: &Hooks,
        releases_dir: Option<&S<String>>,
    ) -> Option<ServerConfig> {
        let name_key = if raw.is_some() {
            format!("{key}.name")
        } else {
            key.to_string()
        };
        let id = self.id(&name_key, "server", &name.value, at(&name));
        let r = raw.as_ref();
        let local = r.and_then(|r| r.local).unwrap_or(false);
        let ssh_host = match r.and_then(|r| r.ssh_host.as_ref()) {
            Some(h) => self
                .name(&format!("{key}.ssh_host"), "ssh host", &h.value, at(h))
                .map(Some),
            None => Some(None),
        };
        let ssh_port = self.port(
            &format!("{key}.ssh_port"),
            r.and_then(|r| r.ssh_port.as_ref()),
        );
        let whose = format!("server {}", name.value);
        let prod_spec = match r.and_then(|r| r.prod_path.as_ref()) {
            Some(p) => Some(Self::spec(&format!("{key}.prod_path"), p)),
            None => prod.cloned(),
        };
        let prod_path = prod_spec.as_ref().and_then(|p| self.path(p, local, &whose));
        let releases = match releases_dir {
            Some(d) => self.path(&Self::spec("releases_dir", d), local, &whose),
            None => prod_path.as_ref().map(|p| {
                let mut s = p.clone().into_os_string();
                s.push("-releases");
                PathBuf::from(s)
            }),
        };
        let canary_url = match r.and_then(|r| r.canary_url.as_ref()) {
            Some(u) => self.urls(&format!("{key}.canary_url"), u).map(Some),
            None => Some(None),
        };
        let canary_command = match r.and_then(|r| r.canary_command.as_ref()) {
            Some(c) => self
                .argv(&format!("{key}.canary_command"), &c.value, at(c))
                .map(Some),
            None => Some(None),
        };
        let canary = match (canary_url?, canary_command?) {
            (Some(_), Some(_)) => {
                self.error(
                    entry_at,
                    key,
                    "sets both canary_url and canary_command; a server is checked one way",
                );
                return None;
            }
            (Some(urls), None) => CanaryTarget::Urls(urls),
            (None, Some(cmd)) => CanaryTarget::Command(cmd),
            (None, None) => CanaryTarget::Default,
        };
        let haproxy_server = match r.and_then(|r| r.haproxy_server.as_ref()) {
            Some(h) => self
                .id(
                    &format!("{key}.haproxy_server"),
                    "haproxy_server",
                    &h.value,
                    at(h),
                )
                .map(Some),
            None => Some(None),
        };
        let group = match r.and_then(|r| r.group.as_ref()) {
            Some(g) => self
                .name(&format!("{key}.group"), "group", &g.value, at(g))
                .map(Some),
            None => Some(None),
        };
        let mut hooks = global_hooks.clone();
        if let Some(h) = r.and_then(|r| r.hooks.as_ref()) {
            for (point, lists) in self.hooks(&format!("{key}.hooks"), h) {
                *hooks.at_mut(point) = lists;
            }
        }
        Some(ServerConfig {
            name: id?,
            ssh_host: ssh_host?,
            ssh_port,
            local,
            prod_path: prod_path?,
            releases_dir: releases?,
            canary,
            haproxy_server: haproxy_server?,
            group: group?,
            pooled: r.and_then(|r| r.pooled).unwrap_or(true),
            hooks,
            at: entry_at,
        })
    }

    fn proxies(&mut self, list: &[S<ProxyEntry>], socket: &PathSpec) -> Option<Vec<ProxyConfig>> {
        let mut out = Vec::with_capacity(list.len());
        let mut ok = true;
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, entry) in list.iter().enumerate() {
            let key = format!("proxy_servers[{i}]");
            let (name, name_key, r): (S<String>, String, Option<&RawProxy>) = match &entry.value {
                ProxyEntry::Name(n) => (spanned_like(n.clone(), entry), key.clone(), None),
                ProxyEntry::Map(m) => (
                    Spanned::new(m.name.value.clone(), m.name.referenced, m.name.defined),
                    format!("{key}.name"),
                    Some(m),
                ),
            };
            let name_at = at(&name);
            let id = self.id(&name_key, "proxy", &name.value, name_at);
            let local = r.and_then(|r| r.local).unwrap_or(false);
            let whose = format!("proxy {}", name.value);
            let sock = match r.and_then(|r| r.haproxy_socket.as_ref()) {
                Some(p) => self.path(
                    &Self::spec(&format!("{key}.haproxy_socket"), p),
                    local,
                    &whose,
                ),
                None => self.path(socket, local, &whose),
            };
            let ssh_host = match r.and_then(|r| r.ssh_host.as_ref()) {
                Some(h) => self
                    .name(&format!("{key}.ssh_host"), "ssh host", &h.value, at(h))
                    .map(Some),
                None => Some(None),
            };
            let ssh_port = self.port(
                &format!("{key}.ssh_port"),
                r.and_then(|r| r.ssh_port.as_ref()),
            );
            match (id, sock, ssh_host) {
                (Some(name), Some(socket), Some(ssh_host)) => {
                    if let Some(first) = names.insert(name.to_string(), i) {
                        self.error(
                            name_at,
                            &name_key,
                            format!(
                                "proxy {:?} is listed twice (also proxy_servers[{first}])",
                                name.as_str()
                            ),
                        );
                        ok = false;
                    }
                    out.push(ProxyConfig {
                        name,
                        local,
                        socket,
                        ssh_host,
                        ssh_port,
                    });
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// Group stages name groups that exist, and every server is in one of them.
    fn stage_groups(
        &mut self,
        stages: &[StageSize],
        stages_at: Option<Loc>,
        servers: &[ServerConfig],
    ) {
        let listed: Vec<&str> = stages
            .iter()
            .filter_map(|s| match s {
                StageSize::Group(g) => Some(g.as_str()),
                _ => None,
            })
            .collect();
        if listed.is_empty() || listed.len() != stages.len() {
            return;
        }
        for g in &listed {
            if !servers.iter().any(|s| s.group.as_deref() == Some(g)) {
                self.error(
                    stages_at,
                    "rollout.stages",
                    format!("group:{g} names a group no server of mw_servers is in"),
                );
            }
        }
        for s in servers {
            if !s.group.as_deref().is_some_and(|g| listed.contains(&g)) {
                self.error(
                    s.at,
                    &format!("mw_servers ({})", s.name),
                    format!(
                        "is in no group listed in rollout.stages (its group: {}), so no stage would deploy it",
                        s.group.as_deref().unwrap_or("none")
                    ),
                );
            }
        }
    }

    /// Warnings about hooks that will not do what the layout needs.
    fn layout_hooks(
        &mut self,
        layout: Layout,
        layout_at: Option<Loc>,
        servers: &[ServerConfig],
        global: &Hooks,
    ) {
        match layout {
            Layout::Releases => {
                let missing: Vec<&str> = servers
                    .iter()
                    .filter(|s| s.hooks.post_activate.is_empty())
                    .map(|s| s.name.as_str())
                    .collect();
                if !missing.is_empty() {
                    let who = if missing.len() == servers.len() {
                        "any server".to_string()
                    } else {
                        missing.join(", ")
                    };
                    self.warn(
                        layout_at,
                        "release_layout",
                        format!(
                            "releases, but no post_activate hook for {who}: PHP servers need a php-fpm \
                             reload after the switch, or opcache keeps serving the old release (e.g. \
                             hooks: {{post_activate: [[\"sudo\", \"systemctl\", \"reload\", \"php8.2-fpm\"]]}}; \
                             see design.md)"
                        ),
                    );
                }
            }
            Layout::Inplace => {
                if !global.post_copy.is_empty()
                    || servers.iter().any(|s| !s.hooks.post_copy.is_empty())
                {
                    self.warn(
                        layout_at,
                        "hooks.post_copy",
                        "post_copy hooks run only in the release layout; with release_layout: inplace they never run",
                    );
                }
            }
        }
    }

    /// `staging_path` may not be, contain, or sit inside a live path, a releases dir or
    /// the state dir.
    fn staging_apart(
        &mut self,
        staging: &Path,
        staging_at: Option<Loc>,
        staging_prod: &Path,
        state_dir: &Path,
        servers: &[ServerConfig],
    ) {
        let mut others: Vec<(String, &Path)> = vec![
            (
                "staging.prod_path (staging's live tree)".to_string(),
                staging_prod,
            ),
            ("state_dir".to_string(), state_dir),
        ];
        for s in servers {
            others.push((format!("the live tree of server {}", s.name), &s.prod_path));
            others.push((
                format!("the releases dir of server {}", s.name),
                &s.releases_dir,
            ));
        }
        let st = normalize(staging);
        // Each offending path once, with everything that lives there.
        let mut found: Vec<(&str, PathBuf, Vec<String>)> = Vec::new();
        for (what, p) in others {
            let o = normalize(p);
            let relation = if st == o {
                "is"
            } else if st.starts_with(&o) {
                "sits inside"
            } else if o.starts_with(&st) {
                "contains"
            } else {
                continue;
            };
            match found.iter_mut().find(|(r, q, _)| *r == relation && *q == o) {
                Some((_, _, whats)) => whats.push(what),
                None => found.push((relation, o, vec![what])),
            }
        }
        for (relation, path, whats) in found {
            let shown = if whats.len() > 3 {
                format!("{} and {} more", whats[..3].join(", "), whats.len() - 3)
            } else {
                whats.join(", ")
            };
            self.error(
                staging_at,
                "staging_path",
                format!(
                    "{} {relation} {} ({shown}): a sync would copy production onto itself or \
                     ship staging's own checkout; keep them apart",
                    staging.display(),
                    path.display(),
                ),
            );
        }
    }
}

fn clone_s(s: &S<String>) -> S<String> {
    Spanned::new(s.value.clone(), s.referenced, s.defined)
}

/// The `{word}` placeholders in `arg` (lowercase letters and `_` between braces).
pub(crate) fn placeholders(arg: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let inner = &after[..close];
                if !inner.is_empty() && inner.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    out.push(inner);
                    rest = &after[close + 1..];
                } else {
                    rest = after;
                }
            }
            None => break,
        }
    }
    out
}

/// `p` with `.` and `..` resolved by its text alone (the paths need not exist yet).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c.as_os_str()),
        }
    }
    out
}
