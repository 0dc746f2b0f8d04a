//! The fault matrix: for each step of the per-server cycle (depool, copy or in-place
//! transfer, activate, hooks, canary, repool, error gate) a failure, a timeout and a hang;
//! a proxy down and a HAProxy reload mid-deploy; ssh to a server cut mid-transfer; and
//! `kill -9` of mwdeploy at seeded random points followed by `mwdeploy recover`. Both
//! layouts, each on one fleet (2 servers behind 2 HAProxies) shared by its cases and
//! restored between them, under steady load through the proxies and a pool monitor.
//!
//! Every case goes through one checker (`faults::check`): each server is back in the
//! pool serving one whole release whose page passes the canary, or out of the pool and
//! reported; never more than `max_unavailable` out at once; no failed request through
//! the proxies that stayed up; the journal ends with `deploy_finished` and says why each
//! server failed; and the case's step really happened. RELIABILITY.md has the matrix.
//!
//! `MWDEPLOY_FAULT_SEED` picks the kill points (printed with any failure).

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use testfleet::{Fault, Fleet, Layout};

mod faults;
mod support;
use faults::*;

/// The fault lands on mw1, the first server of the rollout; mw2 shows what follows.
const MW1: usize = 0;

fn fleet_for(layout: Layout) -> Fleet {
    Fleet::builder()
        .servers(2)
        .proxies(2)
        .tree(40, 1)
        .layout(layout)
        .start()
        .unwrap_or_else(|e| panic!("starting the test fleet (scripts/install-deps.sh): {e}"))
}

fn state_of(r: &Value, server: &str, states: &[&str]) -> bool {
    r["event"] == "server_state" && r["server"] == server && states.iter().any(|s| r["state"] == *s)
}

/// A `post_activate` hook on mw1 that runs `cmd` only while the release holding `stamp`
/// is live (so a rollback's own `post_activate` passes).
fn hook_on_new_release(y: &str, stamp: &str, cmd: &str) -> String {
    let script = format!(
        "if grep -qs '{stamp}' \"$0\"/versions/*/includes/Stamp.php; then {cmd}; fi; exit 0"
    );
    add_post_activate(y, "mw1", &["sh", "-c", &script, "{prod_path}"])
}

/// The fleet's config with mw1's canary asking mw2's page (it passes whatever mw1
/// serves, so HAProxy's checks alone judge mw1) and `keys` set under `rollout:`.
fn canary_on_mw2(c: &Ctx, y: &str, keys: &str) -> String {
    let (u1, u2) = (
        c.fleet.servers()[MW1].canary_url(),
        c.fleet.servers()[1].canary_url(),
    );
    rollout(&edit_server(y, "mw1", |s| s.replace(&u1, &u2)), keys)
}

/// A record about mw1 whose detail contains `text`.
fn mw1_detail_says(lines: &[Value], what: &str, text: &str) -> Result<(), String> {
    has(lines, what, |r| {
        r["server"] == "mw1" && r["detail"].as_str().is_some_and(|d| d.contains(text))
    })
}

/// Sessions held open on every server through every proxy: a POST whose body never
/// comes (HAProxy has passed it to a server; a drain waits for it).
fn hold_sessions(ctx: &Ctx) {
    let mut held = ctx.held.lock().unwrap();
    for p in ctx.fleet.proxies() {
        for _ in 0..4 {
            let mut s = TcpStream::connect(("127.0.0.1", p.frontend_port())).unwrap();
            s.write_all(
                b"POST /wiki/Main_Page HTTP/1.1\r\nHost: test.wikioasis.org\r\n\
                  Content-Length: 100000\r\n\r\nx",
            )
            .unwrap();
            held.push(s);
        }
    }
}

fn mw1_failed_with_detail(lines: &[Value]) -> Result<(), String> {
    has(lines, "a failure of mw1 with a detail", |r| {
        r["event"] == "server_state"
            && r["server"] == "mw1"
            && ["failed", "rolled_back", "rolling_back"]
                .contains(&r["state"].as_str().unwrap_or(""))
            && r["detail"].is_string()
    })
}

fn cases(layout: Layout) -> Vec<Case> {
    let rel = layout == Layout::Releases;
    // In place the live tree is copied into while the server is out; with releases the
    // copy runs ahead, still in the pool.
    let copy_state = if rel { "copying" } else { "transferring" };
    let copy_timeout_key = if rel {
        "copy_timeout"
    } else {
        "activate_timeout"
    };
    // mw1's page is broken (`fault`: an error, or no answer) from its switch (or in-place
    // copy) on, until its rollback.
    let page_broken = move |name: &'static str, fault: Fault| {
        Case::new(name, "canary")
            .at(
                move |r| is_state(r, "mw1", if rel { "activating" } else { "transferring" }),
                move |c| c.inject(fault),
            )
            .at(
                |r| is_state(r, "mw1", "rolling_back"),
                move |c| c.clear(fault),
            )
            .exercised(|l| {
                has(l, "a failed canary of mw1", |r| {
                    is_event(r, "canary", "mw1") && r["ok"] == false
                })
            })
    };
    let mut v = vec![
        // 0: a clean deploy (its journal sizes the kill points).
        // Timeouts go on to the next server (`continue`): a deploy survives one; the other
        // cases stop at the first failure (`abort`, the default of `Case::new`).
        Case::new("baseline", "none")
            .exercised(|l| has(l, "mw2 done", |r| is_state(r, "mw2", "done")))
            .expect(0, &[("mw1", "done"), ("mw2", "done")]),
        // The same without the repool's wait for HAProxy's check (`repool_after_check:
        // false`): each server is made ready at once, and the deploy still keeps one out
        // at most, with no failed request.
        Case::new("baseline_no_check_wait", "repool")
            .edit(|_, _, y| rollout(&y, "  repool_after_check: false\n"))
            .exercised(|l| {
                has(l, "a confirmed repool of mw1", |r| {
                    is_event(r, "pool", "mw1") && r["action"] == "repool" && r["ok"] == true
                })?;
                let waited = |r: &&Value| {
                    is_event(r, "progress", "mw1")
                        && r["line"].as_str().is_some_and(|t| t.contains("check"))
                };
                match l.iter().find(waited) {
                    Some(r) => Err(format!("mw1's repool waited for a check: {r}")),
                    None => Ok(()),
                }
            })
            .expect(0, &[("mw1", "done"), ("mw2", "done")]),
        // ---- depool
        // --force: the preflight would refuse a target the balancer does not know.
        Case::new("depool_fail", "depool")
            .args(&["--force"])
            .edit(|_, _, y| {
                edit_server(&y, "mw1", |s| {
                    s.replace("haproxy_server: \"mw1\"", "haproxy_server: \"mw1-unknown\"")
                })
            })
            .exercised(|l| {
                has(l, "a depool of mw1 refused by a proxy", |r| {
                    is_event(r, "pool", "mw1") && r["action"] == "depool" && r["ok"] == false
                })
            }),
        // Sessions that never end: after drain_timeout the server goes to maintenance
        // anyway, as the operator guide says (fixed, RELIABILITY.md known failure 1: the
        // engine's depool deadline is drain_timeout plus a margin, so the adapter's own
        // bound decides).
        Case::new("depool_timeout", "depool")
            .on_failure("continue")
            .edit(|_, _, y| rollout(&y, "  drain_timeout: \"1s\"\n"))
            .before(hold_sessions)
            .exercised(|l| {
                has(l, "a drain of mw1 past drain_timeout", |r| {
                    is_event(r, "progress", "mw1")
                        && r["line"]
                            .as_str()
                            .is_some_and(|t| t.contains("drain timeout"))
                })
            })
            .expect(0, &[("mw1", "done"), ("mw2", "done")]),
        Case::new("depool_hang", "depool")
            .edit(|_, _, y| rollout(&y, "  drain_timeout: \"2s\"\n  repool_timeout: \"2s\"\n"))
            .at(|r| r["event"] == "stage_started", |c| c.freeze_proxy(1))
            .proxy_down(1)
            .exercised(|l| {
                has(l, "a depool of mw1 not confirmed", |r| {
                    (is_event(r, "pool", "mw1") && r["ok"] == false)
                        || (is_event(r, "server_state", "mw1") && r["state"] == "failed")
                })
            }),
        // ---- copy (release layout) / transfer into the live tree (in place)
        Case::new("copy_fail", "copy")
            .before(|c| c.inject(Fault::DiskWriteFails(MW1)))
            .exercised(mw1_failed_with_detail),
        Case::new("copy_timeout", "copy")
            .on_failure("continue")
            .edit(move |_, _, y| rollout(&y, &format!("  {copy_timeout_key}: \"10ms\"\n")))
            .exercised(mw1_failed_with_detail),
        Case::new("copy_hang", "copy")
            .edit(move |_, _, y| {
                rollout(
                    &y,
                    &format!("  {copy_timeout_key}: \"3s\"\n  hook_timeout: \"3s\"\n"),
                )
            })
            .at(
                move |r| is_state(r, "mw1", copy_state),
                |c| c.freeze_ssh(MW1),
            )
            .exercised(mw1_failed_with_detail),
        Case::new("ssh_cut_mid_transfer", "copy")
            .at(move |r| is_state(r, "mw1", copy_state), |c| c.cut_ssh(MW1))
            .exercised(mw1_failed_with_detail),
    ];
    if rel {
        // In place the transfer above is the activation; with releases it is the switch.
        v.extend([
            // The folder holding the live link made immutable by mw1's own `pre_depool`
            // hook: after its copy (which prepares the switch link there), before its
            // switch, every time. (Done from the journal at `depooling` instead, as this
            // case first did, it raced the few milliseconds a depool takes.)
            Case::new("activate_fail", "activate")
                .edit(|c, _, y| {
                    let parent = c.fleet.servers()[MW1].live_path().parent().unwrap();
                    c.immutable_later(parent);
                    let argv = ["chattr", "+i", &parent.display().to_string()];
                    edit_server(&y, "mw1", |s| {
                        format!(
                            "{s}      pre_depool:\n        - {}\n",
                            serde_json::to_string(&argv).unwrap()
                        )
                    })
                })
                .exercised(|l| {
                    // The hook itself passed (chattr is there: scripts/install-deps.sh):
                    // what failed is the switch.
                    has(l, "mw1's pre_depool hook passing", |r| {
                        is_event(r, "hook", "mw1") && r["hook"] == "pre_depool" && r["ok"] == true
                    })?;
                    mw1_failed_with_detail(l)
                }),
            Case::new("activate_timeout", "activate")
                .on_failure("continue")
                // 1 ms: the switch is one command over the open ssh connection, about
                // 10 ms, so a 10 ms deadline let mw1's switch finish in time once in CI.
                .edit(|_, _, y| rollout(&y, "  activate_timeout: \"1ms\"\n"))
                .exercised(mw1_failed_with_detail),
            Case::new("activate_hang", "activate")
                .edit(|_, _, y| {
                    canary(
                        &rollout(&y, "  activate_timeout: \"3s\"\n  hook_timeout: \"3s\"\n"),
                        "1s",
                        2,
                    )
                })
                .at(|r| is_state(r, "mw1", "activating"), |c| c.freeze_ssh(MW1))
                .at(
                    |r| state_of(r, "mw1", &["rolling_back", "failed"]),
                    |c| c.heal(),
                )
                .exercised(mw1_failed_with_detail),
        ]);
    }
    v.extend([
        // ---- hooks (post_activate on mw1, for the new release only)
        Case::new("hook_fail", "hooks")
            .edit(|_, stamp, y| hook_on_new_release(&y, stamp, "exit 1"))
            .exercised(|l| {
                has(l, "a failed hook on mw1", |r| {
                    is_event(r, "hook", "mw1") && r["ok"] == false
                })
            }),
        Case::new("hook_timeout", "hooks")
            .on_failure("continue")
            .edit(|_, stamp, y| {
                rollout(
                    &hook_on_new_release(&y, stamp, "sleep 20"),
                    "  hook_timeout: \"3s\"\n",
                )
            })
            .exercised(mw1_failed_with_detail),
        Case::new("hook_hang", "hooks")
            .edit(|_, _, y| rollout(&y, "  hook_timeout: \"2s\"\n"))
            .at(|r| is_state(r, "mw1", "hooks"), |c| c.freeze_ssh(MW1))
            .at(
                |r| state_of(r, "mw1", &["rolling_back", "failed"]),
                |c| c.heal(),
            )
            .exercised(mw1_failed_with_detail),
        // ---- canary
        page_broken("canary_fail", Fault::PageError(MW1)),
        // The same without the repool's wait for HAProxy's check: the canary is still the
        // gate (rule 2), whatever the repool does after it.
        page_broken("canary_fail_no_check_wait", Fault::PageError(MW1))
            .edit(|_, _, y| rollout(&y, "  repool_after_check: false\n")),
        Case::new("canary_timeout", "canary")
            .on_failure("continue")
            .edit(|c, _, y| {
                let url = c.fleet.servers()[MW1].canary_url();
                let silent = c.silent_url();
                canary(
                    &edit_server(&y, "mw1", |s| s.replace(&url, &silent)),
                    "1s",
                    2,
                )
            })
            .exercised(|l| {
                has(l, "a canary of mw1 that timed out", |r| {
                    is_event(r, "canary", "mw1") && r["ok"] == false
                })
            }),
        page_broken("canary_hang", Fault::PageHang(MW1)).edit(|_, _, y| canary(&y, "1s", 2)),
        // ---- repool
        // lb2 goes away once mw1 is out: its repool cannot be confirmed everywhere. (At
        // its hooks, not its canary: the 15 ms journal poll plus HAProxy's exit must land
        // before the repool could have had lb2's check pass and be confirmed there.)
        Case::new("repool_fail", "repool")
            .at(
                |r| is_state(r, "mw1", "hooks"),
                |c| c.inject(Fault::ProxyDown(1)),
            )
            .proxy_down(1)
            .exercised(|l| {
                has(l, "a repool of mw1 that lb2 refused", |r| {
                    is_event(r, "pool", "mw1")
                        && r["action"] == "repool"
                        && r["ok"] == false
                        && r["detail"].as_str().is_some_and(|d| d.contains("lb2"))
                })
            }),
        // mw1's page hangs while it is out but its canary asks mw2: the canary passes,
        // HAProxy's checks of mw1 never answer (each takes its 1 s `timeout check`), so
        // the repool must time out and mw1 be kept out and reported (fixed,
        // RELIABILITY.md known failure 2: the repool no longer forces HAProxy's health
        // UP; it leaves maintenance through DRAIN and makes the server ready only once
        // HAProxy's own check passed). `repool_server_dies` below is the other end: checks
        // that fail outright end the repool before its bound.
        Case::new("repool_timeout", "repool")
            .on_failure("continue")
            // Below two check timeouts (1 s each): no check passes or fails in time.
            .edit(|c, _, y| canary_on_mw2(c, &y, "  repool_timeout: \"1s\"\n"))
            .at(
                move |r| is_state(r, "mw1", if rel { "activating" } else { "transferring" }),
                |c| c.inject(Fault::PageHang(MW1)),
            )
            .exercised(|l| {
                mw1_detail_says(
                    l,
                    "mw1's repool not confirmed within its bound",
                    "not confirmed serving",
                )
            })
            .expect(1, &[("mw1", "failed"), ("mw2", "skipped")]),
        // The same with checks that fail outright: mw1's web server stops while it is out
        // (its canary asks mw2 and passes), so HAProxy's checks are refused in DRAIN, it
        // has mw1 DOWN, and mw1 is put back in maintenance then, without waiting for the
        // repool's 30 s bound. (Killed at its passed canary instead, as this case first
        // did, mw1 could pass one proxy's check before the kill landed: then it is served
        // and dies in the pool, which no repool can prevent; CI caught that race.)
        Case::new("repool_server_dies", "repool")
            .edit(|c, _, y| canary_on_mw2(c, &y, "  repool_timeout: \"30s\"\n"))
            .at(
                move |r| is_state(r, "mw1", if rel { "activating" } else { "transferring" }),
                |c| c.inject(Fault::WebServerDown(MW1)),
            )
            .exercised(|l| {
                mw1_detail_says(
                    l,
                    "mw1's repool failed by HAProxy's checks",
                    "failed HAProxy's health check",
                )
            })
            .expect(1, &[("mw1", "failed"), ("mw2", "skipped")]),
        Case::new("repool_hang", "repool")
            .edit(|_, _, y| rollout(&y, "  repool_timeout: \"2s\"\n"))
            .at(|r| is_state(r, "mw1", "canary"), |c| c.freeze_proxy(1))
            .proxy_down(1)
            .exercised(|l| {
                has(l, "a repool of mw1 not confirmed", |r| {
                    is_event(r, "pool", "mw1") && r["action"] == "repool" && r["ok"] == false
                })
            }),
        // ---- error gate (on mw1's PHP error log: `error_gate.log_file` is one path for
        // every server, so these cases deploy mw1 alone)
        Case::new("gate_fail", "error gate")
            .args(&["--servers", "mw1"])
            .edit(|c, _, y| error_gate(&y, &c.fleet.servers()[MW1].php_error_log()))
            .at(
                |r| is_state(r, "mw1", "baking"),
                |c| c.inject(Fault::PageWarning(MW1)),
            )
            .at(
                |r| state_of(r, "mw1", &["rolling_back", "failed", "depooling"]),
                |c| c.clear(Fault::PageWarning(MW1)),
            )
            .exercised(mw1_failed_with_detail),
        Case::new("gate_unknown", "error gate")
            .args(&["--servers", "mw1"])
            .edit(|c, _, y| error_gate(&y, &c.fleet.root().join("no-such.log")))
            .exercised(mw1_failed_with_detail),
        Case::new("gate_hang", "error gate")
            .args(&["--servers", "mw1"])
            .edit(|c, _, y| error_gate(&y, &c.fleet.servers()[MW1].php_error_log()))
            .at(
                |r| is_state(r, "mw1", "baking"),
                |c| {
                    c.freeze_ssh(MW1);
                    std::thread::sleep(Duration::from_secs(4));
                    c.heal();
                },
            )
            .exercised(|l| has(l, "mw1 baking", |r| is_state(r, "mw1", "baking"))),
        // ---- the balancer
        // lb2 stops while mw1 is in flight: with releases during its copy (its depool
        // meets a dead proxy); in place the depool follows the preflight at once, so lb2
        // stops during the transfer (its repool meets a dead proxy).
        Case::new("proxy_down", "pool")
            .at(
                move |r| is_state(r, "mw1", copy_state),
                |c| c.inject(Fault::ProxyDown(1)),
            )
            .proxy_down(1)
            .exercised(|l| {
                has(l, "a pool change lb2 did not confirm", |r| {
                    r["event"] == "pool"
                        && r["ok"] == false
                        && r["detail"].as_str().is_some_and(|d| d.contains("lb2"))
                })?;
                // lb2's own record says it, apart from the server's.
                has(l, "lb2's own answer, failed", |r| {
                    r["event"] == "pool" && r["proxy"] == "lb2" && r["ok"] == false
                })
            }),
        Case::new("proxy_reload", "pool")
            .at(
                |r| is_state(r, "mw1", "canary"),
                |c| c.fleet.reload_proxy(0).unwrap(),
            )
            .exercised(|l| has(l, "mw1 canary", |r| is_state(r, "mw1", "canary"))),
    ]);
    // ---- kill -9 at seeded points, then `mwdeploy recover`
    let mut rng = Rng::new(seed() ^ if rel { 0x5EED } else { 0 });
    for name in ["kill_a", "kill_b", "kill_c"] {
        let at = 0.05 + (rng.below(900) as f64) / 1000.0;
        v.push(Case::new(name, "kill -9").kill_at(at).exercised(|l| {
            has(l, "a journal closed by recover", |r| {
                r["event"] == "deploy_finished" || r.to_string().contains("closed by")
            })
        }));
    }
    v
}

/// An error gate on `log` counting the warnings `Fault::PageWarning` makes. Not "PHP
/// Warning" alone: testfleet's php-fpm logs "PHP Warning:  Zend OPcache can't be temporary
/// enabled" each time it starts a worker (`php_admin_value[opcache.enable]` in its pool
/// config), which would fail a gate at random.
fn error_gate(y: &str, log: &std::path::Path) -> String {
    y.replacen(
        "canary:\n",
        &format!(
            "canary:\n  error_gate:\n    log_file: \"{}\"\n    pattern: \"PHP Warning: +testfleet injected\"\n    \
             threshold: 1\n    window: \"2s\"\n    on_unknown: \"fail\"\n",
            log.display()
        ),
        1,
    )
}

#[test]
fn release_layout_fault_matrix() {
    let fleet = fleet_for(Layout::Releases);
    run_matrix(&fleet, Layout::Releases, &cases(Layout::Releases));
}

#[test]
fn in_place_fault_matrix() {
    let fleet = fleet_for(Layout::Inplace);
    run_matrix(&fleet, Layout::Inplace, &cases(Layout::Inplace));
}
