//! The transfer against real rsync, OpenSSH, nginx and php-fpm from `testfleet`: each
//! test starts its own small fleet. Nothing is skipped: a missing program fails the test
//! with a message naming scripts/install-deps.sh.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use mwdeploy_core::ports::{Hook, ProgressUpdate, Transfer};
use mwdeploy_core::{HookPoint, Layout, PortErrorKind};
use mwdeploy_rsync::{Hooks, Live, ManifestScope, RsyncError, Scope, TreePath, MANIFEST_FILE};
use mwdeploy_sim::conformance::transfer_copy_activate_rollback;
use support::*;
use testfleet::{write_stamp, FailureKind, Fault, LoadOptions, INITIAL_STAMP};

#[tokio::test]
async fn copy_then_activate_switches_in_one_step_under_load_and_rollback_needs_no_rsync() {
    let fleet = fleet(1, 1, Layout::Releases);
    let mw1 = server(&fleet, 0);
    let t = transfer(&fleet, config(&fleet, Layout::Releases));
    let reload = Hooks::new(hosts(&fleet), t.config())
        .unwrap()
        .global(
            HookPoint::PostActivate,
            vec![fleet.servers()[0].reload_command().to_vec()],
        )
        .unwrap();
    write_stamp(fleet.staging().path(), "r2").unwrap();
    let r2 = release(2);
    let initial = live(&fleet, 0);

    // The copy runs while the server serves the old release, and reports progress.
    let (progress, seen) = recorder(&mw1);
    within("copy", t.copy(&mw1, &r2, &progress)).await.unwrap();
    let percents: Vec<f32> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|u| u.percent)
        .collect();
    assert!(
        percents.last() == Some(&100.0) && percents.iter().all(|p| (0.0..=100.0).contains(p)),
        "rsync's progress reached the handle: {percents:?}"
    );
    assert!(seen.lock().unwrap().iter().any(|u| u.rate.is_some()));
    assert_eq!(live(&fleet, 0), initial);
    assert_eq!(stamp(&fleet, 0), INITIAL_STAMP);

    let load = fleet
        .start_load(LoadOptions::default().pause(Duration::ZERO))
        .unwrap();
    wait_for_requests(&load, 20).await;
    within("activate", t.activate(&mw1, &r2, &progress))
        .await
        .unwrap();
    assert_eq!(live(&fleet, 0), r2);
    assert_eq!(
        stamp(&fleet, 0),
        "r2",
        "served from the first request after the switch"
    );
    within(
        "reload",
        reload.run(&mw1, HookPoint::PostActivate, &r2, &progress),
    )
    .await
    .unwrap();
    assert_eq!(stamp(&fleet, 0), "r2");
    wait_for_requests(&load, load.report().requests + 20).await;

    // Rollback with no staging tree at all: it cannot have copied anything.
    let staging = fleet.staging().path().to_path_buf();
    let moved = staging.with_extension("away");
    fs::rename(&staging, &moved).unwrap();
    let (progress, seen) = recorder(&mw1);
    let back = within("rollback", t.rollback(&mw1, &progress)).await;
    fs::rename(&moved, &staging).unwrap();
    assert_eq!(back.unwrap(), initial);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|u| u.percent.is_none() && !u.line.as_deref().unwrap_or("").contains("rsync")),
        "no rsync ran: {:?}",
        seen.lock().unwrap()
    );
    assert_eq!(live(&fleet, 0), initial);
    reload
        .run(&mw1, HookPoint::PostActivate, &r2, &progress)
        .await
        .unwrap();
    assert_eq!(stamp(&fleet, 0), INITIAL_STAMP);
    wait_for_requests(&load, load.report().requests + 20).await;

    let report = load.stop();
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert_eq!(
        report.count(&FailureKind::Mixed {
            a: String::new(),
            b: String::new()
        }),
        0
    );
    let stamps: BTreeSet<&str> = report.stamps.keys().map(String::as_str).collect();
    assert_eq!(
        stamps,
        BTreeSet::from([INITIAL_STAMP, "r2"]),
        "both releases served, each whole"
    );
}

async fn wait_for_requests(load: &testfleet::LoadGenerator, n: u64) {
    within("load requests", async {
        while load.report().requests < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn core_port_conformance_passes_against_real_rsync() {
    let fleet = fleet(1, 0, Layout::Releases);
    let mw1 = server(&fleet, 0);
    let t = transfer(&fleet, config(&fleet, Layout::Releases));
    assert!(t.can_rollback());
    within(
        "conformance",
        transfer_copy_activate_rollback(&t, &mw1, &release(1)),
    )
    .await
    .unwrap();
    assert_eq!(stamp(&fleet, 0), INITIAL_STAMP);
}

#[tokio::test]
async fn a_same_size_rewrite_within_the_same_second_is_still_copied() {
    let fleet = fleet(1, 0, Layout::Releases);
    let mw1 = server(&fleet, 0);
    let t = transfer(&fleet, config(&fleet, Layout::Releases));
    let staging = fleet.staging().path();
    let file = staging.join("config/Same.php");
    let second = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    fs::write(&file, "<?php // version A\n").unwrap();
    set_mtime(&file, second + Duration::from_nanos(100));
    let (r1, r2) = (release(1), release(2));
    deploy(&t, &mw1, &r1).await;

    // Rewritten with the same size, within the same second.
    fs::write(&file, "<?php // version B\n").unwrap();
    set_mtime(&file, second + Duration::from_nanos(200));
    let dir = fleet.servers()[0].releases_dir();
    let old = dir.join(r1.as_str()).join("config/Same.php");
    let (a, b) = (fs::metadata(&old).unwrap(), fs::metadata(&file).unwrap());
    assert_eq!(
        (a.len(), a.mtime()),
        (b.len(), b.mtime()),
        "same size, same second"
    );
    // The trap is real: rsync's default quick check hard-links the stale file.
    let scratch = fleet.root().join("quick-check");
    let out = std::process::Command::new("rsync")
        .arg("-a")
        .arg(format!(
            "--link-dest={}",
            dir.join(r1.as_str()).join("config").display()
        ))
        .arg(format!("{}/", staging.join("config").display()))
        .arg(&scratch)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        fs::read_to_string(scratch.join("Same.php")).unwrap(),
        "<?php // version A\n"
    );

    within("copy", t.copy(&mw1, &r2, &quiet(&mw1)))
        .await
        .unwrap();
    let new = dir.join(r2.as_str()).join("config/Same.php");
    assert_eq!(fs::read_to_string(&new).unwrap(), "<?php // version B\n");
    assert_eq!(
        fs::read_to_string(&old).unwrap(),
        "<?php // version A\n",
        "the live release keeps its bytes"
    );
    let index = |id: &mwdeploy_core::ReleaseId| {
        fs::metadata(dir.join(id.as_str()).join("index.php"))
            .unwrap()
            .ino()
    };
    assert_eq!(index(&r1), index(&r2), "unchanged files stay hard links");
}

#[tokio::test]
async fn excludes_are_anchored_and_nothing_else_survives_from_the_old_release() {
    let fleet = fleet(1, 0, Layout::Releases);
    let mw1 = server(&fleet, 0);
    let t = transfer(&fleet, config(&fleet, Layout::Releases));
    let (r1, r2) = (release(1), release(2));
    deploy(&t, &mw1, &r1).await;
    let dir = fleet.servers()[0].releases_dir();
    let old = dir.join(r1.as_str());
    // What the old tool left in a live tree: .git shipped to production, a stray file.
    fs::create_dir_all(old.join(".git")).unwrap();
    fs::write(old.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    fs::write(old.join("stray.php"), "<?php // not in staging\n").unwrap();

    within("copy", t.copy(&mw1, &r2, &quiet(&mw1)))
        .await
        .unwrap();
    let staging = snapshot(fleet.staging().path());
    assert!(
        staging.contains_key(".git/HEAD") && staging.keys().any(|p| p.starts_with("cache/")),
        "staging holds what the default excludes are for"
    );
    let expected: BTreeSet<&str> = staging
        .keys()
        .map(String::as_str)
        .filter(|p| !p.starts_with(".git/") && !p.starts_with("cache/"))
        .collect();
    let got = snapshot(&dir.join(r2.as_str()));
    let got_paths: BTreeSet<&str> = got
        .keys()
        .map(String::as_str)
        .filter(|p| *p != MANIFEST_FILE)
        .collect();
    assert_eq!(
        got_paths, expected,
        "exactly the staging tree minus the excludes"
    );
    assert!(got.contains_key("versions/1.45/includes/cache/ObjectCache.php"));
    assert!(got
        .keys()
        .any(|p| p.starts_with("versions/1.45/extensions/Echo/includes/cache/")));
    let live = snapshot(&old);
    for p in &expected {
        assert_eq!(got[*p].bytes, staging[*p].bytes, "{p}");
        assert_eq!(got[*p].ino, live[*p].ino, "{p}: unchanged, so a hard link");
    }
}

#[tokio::test]
async fn pruning_keeps_live_and_previous_and_rollback_skips_a_rolled_back_release() {
    let fleet = fleet(1, 0, Layout::Releases);
    let mw1 = server(&fleet, 0);
    let mut c = config(&fleet, Layout::Releases);
    c.keep_releases = 2;
    let t = transfer(&fleet, c);
    let dir = fleet.servers()[0].releases_dir().to_path_buf();
    let initial = live(&fleet, 0);
    let r: Vec<_> = (1..=5).map(release).collect();
    let names = |ids: &[&mwdeploy_core::ReleaseId]| {
        let mut v: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        v.sort();
        v
    };

    deploy(&t, &mw1, &r[0]).await;
    deploy(&t, &mw1, &r[1]).await;
    assert_eq!(release_dirs(&dir), names(&[&initial, &r[0], &r[1]]));
    deploy(&t, &mw1, &r[2]).await;
    // r3's copy removed the first release: neither live (r2) nor the one before (r1).
    assert_eq!(release_dirs(&dir), names(&[&r[0], &r[1], &r[2]]));

    // r4 goes live and is rolled back.
    deploy(&t, &mw1, &r[3]).await;
    let q = quiet(&mw1);
    assert_eq!(t.rollback(&mw1, &q).await.unwrap(), r[2]);
    // r5 goes live; back from it is r3 again, never the rolled-back r4.
    deploy(&t, &mw1, &r[4]).await;
    let listing = t.releases(&mw1).await.unwrap();
    assert_eq!(listing.live_release(), Some(&r[4]));
    assert_eq!(listing.previous.as_ref(), Some(&r[2]));
    assert_eq!(t.rollback(&mw1, &q).await.unwrap(), r[2]);
    assert_eq!(live(&fleet, 0), r[2]);
    // r5's copy kept the newest (r4), the live one (r3) and the one before it (r2).
    assert_eq!(release_dirs(&dir), names(&[&r[1], &r[2], &r[3], &r[4]]));

    // The listing: every release with its manifest, which one is live, where back is.
    let listing = t.releases(&mw1).await.unwrap();
    assert_eq!(listing.live, Live::Release(r[2].clone()));
    assert_eq!(listing.previous.as_ref(), Some(&r[1]));
    let ids: Vec<_> = listing.releases.iter().map(|e| e.id.clone()).collect();
    assert_eq!(
        ids,
        vec![r[1].clone(), r[2].clone(), r[3].clone(), r[4].clone()]
    );
    for e in &listing.releases {
        assert_eq!(e.live, e.id == r[2], "{}", e.id);
        assert_eq!(e.previous, e.id == r[1], "{}", e.id);
        let m = e.manifest.as_ref().expect("a manifest");
        assert_eq!(m.id, e.id);
        assert_eq!(m.deploy, "test-deploy");
        assert_eq!(m.commits.get(".").map(String::as_str), Some("0123abcd"));
        assert_eq!(m.scope, ManifestScope::Full);
        assert!(m.created.ends_with('Z'), "{}", m.created);
        let on_disk = fs::read_to_string(dir.join(e.id.as_str()).join(MANIFEST_FILE)).unwrap();
        assert_eq!(
            serde_json::from_str::<mwdeploy_rsync::Manifest>(&on_disk).unwrap(),
            *m
        );
    }

    // A named rollback; a release that is not there is refused by name.
    assert_eq!(t.rollback_to(&mw1, Some(&r[3]), &q).await.unwrap(), r[3]);
    assert_eq!(live(&fleet, 0), r[3]);
    match t.rollback_to(&mw1, Some(&initial), &q).await {
        Err(RsyncError::NoSuchRelease { release, .. }) => assert_eq!(release, initial),
        other => panic!("{other:?}"),
    }
    assert_eq!(stamp(&fleet, 0), INITIAL_STAMP);
}

#[tokio::test]
async fn a_plain_live_folder_is_converted_at_activation_and_shared_dirs_move_out_of_it() {
    let fleet = fleet(1, 0, Layout::Inplace);
    let mw1 = server(&fleet, 0);
    let site = &fleet.servers()[0];
    let live_path = site.live_path().to_path_buf();
    let staging = fleet.staging().path();
    // The old tool's way first: an in-place deploy (rsync -a keeps staging's times).
    let inplace = transfer(&fleet, config(&fleet, Layout::Inplace));
    deploy(&inplace, &mw1, &release(1)).await;
    // Uploads in the live tree; staging's own images/ must reach no release.
    fs::create_dir_all(live_path.join("images")).unwrap();
    fs::write(live_path.join("images/upload.png"), "uploaded").unwrap();
    fs::create_dir_all(staging.join("images")).unwrap();
    fs::write(staging.join("images/staging-only.png"), "staging").unwrap();
    write_stamp(staging, "r2").unwrap();

    let mut c = config(&fleet, Layout::Releases);
    c.shared_dirs = vec![TreePath::new("images").unwrap()];
    let t = transfer(&fleet, c);
    let (r2, r3) = (release(2), release(3));
    let before = snapshot(&live_path);
    within("copy", t.copy(&mw1, &r2, &quiet(&mw1)))
        .await
        .unwrap();
    // The copy ran beside the plain folder, which serves on, unchanged.
    assert!(fs::symlink_metadata(&live_path).unwrap().is_dir());
    let after = snapshot(&live_path);
    assert_eq!(after.len(), before.len());
    for (p, e) in &before {
        assert_eq!((&after[p].bytes, after[p].ino), (&e.bytes, e.ino), "{p}");
    }
    assert_eq!(stamp(&fleet, 0), INITIAL_STAMP);
    let new = site.releases_dir().join(r2.as_str());
    let linked = |p: &str| fs::metadata(new.join(p)).unwrap().ino() == before[p].ino;
    assert!(
        linked("index.php"),
        "unchanged files link into the plain folder"
    );
    assert!(!linked("versions/1.45/includes/Stamp.php"));
    assert!(!new.join("images/staging-only.png").exists());

    within("activate", t.activate(&mw1, &r2, &quiet(&mw1)))
        .await
        .unwrap();
    assert_eq!(live(&fleet, 0), r2);
    site.reload().unwrap();
    assert_eq!(stamp(&fleet, 0), "r2");
    let shared = live_path.with_file_name("mediawiki-shared").join("images");
    assert_eq!(
        fs::read_to_string(shared.join("upload.png")).unwrap(),
        "uploaded"
    );
    assert_eq!(
        fs::read_to_string(live_path.join("images/upload.png")).unwrap(),
        "uploaded"
    );
    assert!(!shared.join("staging-only.png").exists());
    let listing = t.releases(&mw1).await.unwrap();
    let converted = listing
        .releases
        .iter()
        .find(|e| e.id.as_str().ends_with("-converted"))
        .expect("the old tree is a release");
    assert!(converted.id < r2);
    assert_eq!(listing.previous.as_ref(), Some(&converted.id));
    assert_eq!(
        converted.manifest.as_ref().map(|m| &m.scope),
        Some(&ManifestScope::Converted)
    );
    let old_tree = site.releases_dir().join(converted.id.as_str());
    assert_eq!(
        fs::metadata(old_tree.join("index.php")).unwrap().ino(),
        before["index.php"].ino
    );
    for tree in [&old_tree, &new] {
        assert_eq!(fs::read_link(tree.join("images")).unwrap(), shared);
    }

    // Uploads outlive releases.
    fs::write(live_path.join("images/second.png"), "later upload").unwrap();
    deploy(&t, &mw1, &r3).await;
    assert_eq!(
        fs::read_to_string(live_path.join("images/second.png")).unwrap(),
        "later upload"
    );
    // Back twice: the converted tree serves again.
    let q = quiet(&mw1);
    assert_eq!(t.rollback(&mw1, &q).await.unwrap(), r2);
    assert_eq!(t.rollback(&mw1, &q).await.unwrap(), converted.id);
    site.reload().unwrap();
    assert_eq!(stamp(&fleet, 0), INITIAL_STAMP);
    assert_eq!(
        fs::read_to_string(live_path.join("images/upload.png")).unwrap(),
        "uploaded"
    );
}

#[tokio::test]
async fn a_targeted_deploy_copies_only_its_subtree_and_refuses_a_server_behind_the_latest() {
    let fleet = fleet(2, 0, Layout::Releases);
    let (mw1, mw2) = (server(&fleet, 0), server(&fleet, 1));
    let full = transfer(&fleet, config(&fleet, Layout::Releases));
    let r1 = release(1);
    deploy(&full, &mw1, &r1).await;
    let latest = full
        .latest_release(&[mw1.clone(), mw2.clone()])
        .await
        .unwrap();
    assert_eq!(
        latest,
        Some(r1.clone()),
        "mw2's first release has no manifest"
    );

    let staging = fleet.staging().path();
    let echo = "versions/1.45/extensions/Echo/extension.json";
    let vector = "versions/1.45/skins/Vector/skin.json";
    fs::write(
        staging.join(echo),
        "{\"name\": \"Echo\", \"changed\": true}\n",
    )
    .unwrap();
    fs::write(
        staging.join(vector),
        "{\"name\": \"Vector\", \"changed\": true}\n",
    )
    .unwrap();
    let sub = TreePath::new("versions/1.45/extensions/Echo").unwrap();
    let targeted = transfer(&fleet, config(&fleet, Layout::Releases))
        .with_scope(Scope::subtrees(vec![sub.clone()], latest))
        .unwrap();
    let r2 = release(2);
    within("targeted copy", targeted.copy(&mw1, &r2, &quiet(&mw1)))
        .await
        .unwrap();

    let dir = fleet.servers()[0].releases_dir();
    let (old, new) = (
        snapshot(&dir.join(r1.as_str())),
        snapshot(&dir.join(r2.as_str())),
    );
    assert_eq!(
        old.keys().collect::<Vec<_>>(),
        new.keys().collect::<Vec<_>>(),
        "the new release is complete"
    );
    let mut in_subtree = 0;
    for (path, e) in &new {
        let before = &old[path];
        if path == echo || path == MANIFEST_FILE {
            assert_ne!(e.ino, before.ino, "{path}: a new file");
        } else {
            assert_eq!(
                (e.ino, e.mtime_ns),
                (before.ino, before.mtime_ns),
                "{path}: untouched (the same inode and mtime)"
            );
            in_subtree += usize::from(path.starts_with(sub.as_str()));
        }
    }
    assert!(
        in_subtree > 0,
        "unchanged files inside the subtree are hard links too"
    );
    assert!(String::from_utf8_lossy(&new[echo].bytes).contains("changed"));
    assert_eq!(
        new[vector].bytes, old[vector].bytes,
        "outside the subtree nothing is copied"
    );
    assert_eq!(
        fs::read(dir.join(r1.as_str()).join(MANIFEST_FILE)).unwrap(),
        old[MANIFEST_FILE].bytes,
        "the live release's manifest is not rewritten"
    );
    let listing = targeted.releases(&mw1).await.unwrap();
    let entry = listing.releases.iter().find(|e| e.id == r2).unwrap();
    assert_eq!(
        entry.manifest.as_ref().unwrap().scope,
        ManifestScope::Subtrees {
            base: Some(r1.clone()),
            paths: vec![sub.to_string()]
        }
    );

    // mw2 serves its first release, not r1: refused, nothing made there.
    let dir2 = fleet.servers()[1].releases_dir();
    let before = fs::read_dir(dir2).unwrap().count();
    let err = targeted.copy(&mw2, &r2, &quiet(&mw2)).await.unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Permanent);
    assert_eq!(err.server.as_ref(), Some(&mw2.id));
    assert!(err.detail.contains("run a full deploy"), "{err}");
    assert!(err.detail.contains(live(&fleet, 1).as_str()), "{err}");
    assert_eq!(fs::read_dir(dir2).unwrap().count(), before);

    targeted.activate(&mw1, &r2, &quiet(&mw1)).await.unwrap();
    fleet.servers()[0].reload().unwrap();
    assert_eq!(stamp(&fleet, 0), INITIAL_STAMP);
}

#[tokio::test]
async fn no_room_is_reported_before_copying_and_a_failing_disk_leaves_the_live_release() {
    let fleet = fleet(1, 0, Layout::Releases);
    let mw1 = server(&fleet, 0);
    let dir = fleet.servers()[0].releases_dir().to_path_buf();
    let entries = || {
        let mut v: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = entries();
    let initial = live(&fleet, 0);
    let mut c = config(&fleet, Layout::Releases);
    c.reserve_bytes = 1 << 60;
    let t = transfer(&fleet, c);
    let err = t.copy(&mw1, &release(1), &quiet(&mw1)).await.unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Permanent);
    assert_eq!(err.server.as_ref(), Some(&mw1.id));
    assert!(
        err.detail.contains("not enough room") && err.detail.contains("free, 1.0 EiB needed"),
        "{err}"
    );
    assert_eq!(entries(), before, "nothing was copied");

    // Writes fail (the releases folder is immutable): an error, the live release serves.
    write_stamp(fleet.staging().path(), "r1").unwrap();
    let t = transfer(&fleet, config(&fleet, Layout::Releases));
    fleet.inject(Fault::DiskWriteFails(0)).unwrap();
    let result = within("copy", t.copy(&mw1, &release(1), &quiet(&mw1))).await;
    fleet.clear(Fault::DiskWriteFails(0)).unwrap();
    let err = result.unwrap_err();
    assert_eq!(err.server.as_ref(), Some(&mw1.id));
    assert!(err.detail.contains("Operation not permitted"), "{err}");
    assert_eq!(entries(), before);
    assert_eq!(live(&fleet, 0), initial);
    assert_eq!(stamp(&fleet, 0), INITIAL_STAMP);
}

#[tokio::test]
async fn an_unreachable_server_fails_with_a_typed_error() {
    let fleet = fleet(1, 0, Layout::Releases);
    let mw1 = server(&fleet, 0);
    let t = transfer(&fleet, config(&fleet, Layout::Releases));
    fleet.inject(Fault::SshDown(0)).unwrap();
    let err = within(
        "copy to a dead host",
        t.copy(&mw1, &release(1), &quiet(&mw1)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Transient);
    assert_eq!(err.server.as_ref(), Some(&mw1.id));
    assert!(err.detail.contains("Connection refused"), "{err}");
    match within("listing a dead host", t.releases(&mw1)).await {
        Err(RsyncError::Unreachable { server, host, .. }) => {
            assert_eq!(server, mw1.id);
            assert!(
                host.ends_with(&format!(":{}", fleet.servers()[0].ssh_port())),
                "{host}"
            );
        }
        other => panic!("{other:?}"),
    }
    fleet.clear(Fault::SshDown(0)).unwrap();
    deploy(&t, &mw1, &release(1)).await;
}

#[tokio::test]
async fn a_transfer_cut_half_way_leaves_the_live_release_untouched() {
    let fleet = fleet(1, 0, Layout::Releases);
    let mw1 = server(&fleet, 0);
    let staging = fleet.staging().path();
    // 4 MiB of new bytes at 512 KiB/s: the copy takes seconds.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let big: Vec<u8> = (0..4 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(staging.join("versions/1.45/includes/Big.php"), &big).unwrap();
    write_stamp(staging, "r1").unwrap();
    let mut slow = config(&fleet, Layout::Releases);
    slow.bwlimit_kib = Some(512);
    let t = std::sync::Arc::new(transfer(&fleet, slow));
    let r1 = release(1);
    let initial = live(&fleet, 0);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let progress = mwdeploy_core::ports::Progress::new(mw1.id.clone(), "copy", move |_, _, u| {
        if u.percent.is_some_and(|p| p > 0.0 && p < 100.0) {
            let _ = tx.send(());
        }
    });
    let task = tokio::spawn({
        let (t, mw1, r1) = (t.clone(), mw1.clone(), r1.clone());
        async move { t.copy(&mw1, &r1, &progress).await }
    });
    within("rsync under way", rx.recv()).await;
    task.abort();
    assert!(
        task.await.unwrap_err().is_cancelled(),
        "the copy was still running"
    );
    wait_for_no_rsync(fleet.root()).await;

    let dir = fleet.servers()[0].releases_dir();
    assert!(dir.join(format!(".{r1}.partial")).is_dir(), "cut half way");
    assert!(!dir.join(r1.as_str()).exists(), "never a release");
    assert_eq!(live(&fleet, 0), initial);
    assert_eq!(stamp(&fleet, 0), INITIAL_STAMP);

    // The next copy clears what was left and completes.
    let t = transfer(&fleet, config(&fleet, Layout::Releases));
    deploy(&t, &mw1, &r1).await;
    fleet.servers()[0].reload().unwrap();
    assert_eq!(stamp(&fleet, 0), "r1");
    assert!(!dir.join(format!(".{r1}.partial")).exists());
    assert_eq!(
        fs::read(dir.join(r1.as_str()).join("versions/1.45/includes/Big.php")).unwrap(),
        big
    );
}

/// Waits until no rsync of this fleet is left: the killed client, and the server's
/// receiver (which works in the release's folder), ending once its pipe closes.
async fn wait_for_no_rsync(root: &Path) {
    within("the cut rsync to end", async {
        loop {
            let running = fs::read_dir("/proc").unwrap().flatten().any(|e| {
                let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
                let is_rsync = cmdline
                    .split(|b| *b == 0)
                    .next()
                    .is_some_and(|argv0| argv0.ends_with(b"rsync"));
                let ours = cmdline.windows(3).any(|w| w == b"r1.")
                    || fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(root));
                is_rsync && ours
            });
            if !running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn in_place_copies_into_the_live_tree_at_activation_and_has_nothing_to_roll_back_to() {
    let fleet = fleet(1, 0, Layout::Inplace);
    let mw1 = server(&fleet, 0);
    let site = &fleet.servers()[0];
    let t = transfer(&fleet, config(&fleet, Layout::Inplace));
    assert!(!t.can_rollback());
    write_stamp(fleet.staging().path(), "r1").unwrap();
    let before = snapshot(site.live_path());
    let r1 = release(1);
    let (progress, seen) = recorder(&mw1);
    t.copy(&mw1, &r1, &progress).await.unwrap();
    assert_eq!(
        snapshot(site.live_path()),
        before,
        "copy does nothing in place"
    );
    assert!(seen.lock().unwrap().iter().all(|u| u.percent.is_none()));

    within("in-place sync", t.activate(&mw1, &r1, &progress))
        .await
        .unwrap();
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .any(|u| u.percent == Some(100.0)));
    // Out of the pool (the engine depools a pooled server first): deletions wait for
    // the new files, but nothing pays for putting every file in place at the end.
    let argv = rsync_line(&seen.lock().unwrap());
    assert!(argv.contains(" --delete-delay "), "{argv}");
    assert!(!argv.contains("--delay-updates"), "{argv}");
    site.reload().unwrap();
    assert_eq!(stamp(&fleet, 0), "r1");
    assert!(
        !site.live_path().join(".git").exists(),
        ".git is not shipped"
    );
    // A server that keeps serving while it is copied (no pool: no --rollout, a job
    // runner, staging) gets its new files in place together.
    let mut serving = mw1.clone();
    serving.pooled = false;
    write_stamp(fleet.staging().path(), "r1b").unwrap();
    let (progress_b, seen_b) = recorder(&serving);
    let r3 = release(3);
    within(
        "in-place sync of a serving tree",
        t.activate(&serving, &r3, &progress_b),
    )
    .await
    .unwrap();
    let argv = rsync_line(&seen_b.lock().unwrap());
    assert!(argv.contains(" --delay-updates "), "{argv}");
    assert!(argv.contains(" --delete-delay "), "{argv}");
    site.reload().unwrap();
    assert_eq!(stamp(&fleet, 0), "r1b");
    match t.releases(&mw1).await.unwrap().live {
        Live::Directory { manifest: Some(m) } => {
            assert_eq!((m.id, m.scope), (r3.clone(), ManifestScope::Full))
        }
        other => panic!("{other:?}"),
    }
    let err = t.rollback(&mw1, &progress).await.unwrap_err();
    assert!(err.detail.contains("nothing to roll back to"), "{err}");
    assert_eq!(err.server.as_ref(), Some(&mw1.id));
    transfer_copy_activate_rollback(&t, &mw1, &release(2))
        .await
        .unwrap();
}

/// The rsync command a step showed (`$ rsync ...`).
fn rsync_line(seen: &[ProgressUpdate]) -> String {
    seen.iter()
        .filter_map(|u| u.line.as_deref())
        .find(|l| l.starts_with("$ rsync "))
        .unwrap_or_else(|| panic!("no rsync command shown: {seen:?}"))
        .to_string()
}

#[tokio::test]
async fn the_deploy_hosts_own_staging_site_uses_the_same_code_here() {
    let fleet = fleet(1, 0, Layout::Releases);
    let site = staging_site(&fleet);
    let t = transfer(&fleet, config(&fleet, Layout::Releases));
    let hooks = Hooks::new(hosts(&fleet), t.config())
        .unwrap()
        .server(
            site.id.clone(),
            HookPoint::PostActivate,
            vec![fleet.staging().reload_command().to_vec()],
        )
        .unwrap();
    let first = fleet.staging().live_release().unwrap();
    write_stamp(fleet.staging().path(), "r1").unwrap();
    let r1 = release(1);
    let q = quiet(&site);
    deploy(&t, &site, &r1).await;
    hooks
        .run(&site, HookPoint::PostActivate, &r1, &q)
        .await
        .unwrap();
    assert_eq!(fleet.staging().served_stamp().unwrap(), "r1");
    assert_eq!(fleet.staging().live_release(), Some(r1.clone()));
    assert_eq!(stamp(&fleet, 0), INITIAL_STAMP, "no server was touched");
    assert_eq!(t.rollback(&site, &q).await.unwrap(), first);
    hooks
        .run(&site, HookPoint::PostActivate, &r1, &q)
        .await
        .unwrap();
    assert_eq!(fleet.staging().served_stamp().unwrap(), INITIAL_STAMP);
}

#[tokio::test]
async fn post_copy_hooks_work_on_the_new_release_and_the_previous_one_keeps_its_bytes() {
    require(&["php", "sh", "false"]);
    let fleet = fleet(1, 0, Layout::Releases);
    let mw1 = server(&fleet, 0);
    let t = transfer(&fleet, config(&fleet, Layout::Releases));
    let (r1, r2) = (release(1), release(2));
    deploy(&t, &mw1, &r1).await;
    within("copy", t.copy(&mw1, &r2, &quiet(&mw1)))
        .await
        .unwrap();
    let dir = fleet.servers()[0].releases_dir();
    let skin = "versions/1.45/skins/Vector/skin.json";
    let before = snapshot(&dir.join(r1.as_str()));
    assert_eq!(
        fs::metadata(dir.join(r2.as_str()).join(skin))
            .unwrap()
            .ino(),
        before[skin].ino,
        "before the hooks the file is shared with the previous release"
    );
    let hooks = Hooks::new(hosts(&fleet), t.config())
        .unwrap()
        .global(
            HookPoint::PostCopy,
            argvs(&[
                &[
                    "php",
                    "{release_path}/scripts/mwscript.php",
                    "rebuildLocalisationCache",
                    "--wiki",
                    "testwiki",
                ],
                // Rewrites a file in place: open, truncate, write.
                &[
                    "sh",
                    "-c",
                    "printf '%s' \"$2\" > \"$1\"",
                    "rewrite",
                    "{release_path}/versions/1.45/skins/Vector/skin.json",
                    "rewritten on {server} for {release}",
                ],
            ]),
        )
        .unwrap()
        .unshare_before_post_copy(vec![TreePath::new(skin).unwrap()]);
    let (progress, seen) = recorder(&mw1);
    within(
        "post_copy",
        hooks.run(&mw1, HookPoint::PostCopy, &r2, &progress),
    )
    .await
    .unwrap();

    let after = snapshot(&dir.join(r1.as_str()));
    assert_eq!(after.len(), before.len());
    for (p, e) in &before {
        assert_eq!(
            after[p].bytes, e.bytes,
            "{p}: the previous release keeps its bytes"
        );
    }
    let new = dir.join(r2.as_str());
    assert_eq!(
        fs::read_to_string(new.join(skin)).unwrap(),
        format!("rewritten on mw1 for {r2}")
    );
    assert!(new.join("cache/l10n/l10n_cache-en.json").is_file());
    assert!(seen.lock().unwrap().iter().any(|u| u
        .line
        .as_deref()
        .is_some_and(|l| l.contains("Rebuilt the localisation cache"))));

    // After the switch, {release} and {release_path} name the live release (here still r1).
    let out = fleet.root().join("hook-saw");
    let later = Hooks::new(hosts(&fleet), t.config())
        .unwrap()
        .global(
            HookPoint::PostActivate,
            argvs(&[&[
                "sh",
                "-c",
                "printf '%s %s' \"$1\" \"$2\" > \"$3\"",
                "saw",
                "{release}",
                "{release_path}",
                &out.display().to_string(),
            ]]),
        )
        .unwrap();
    later
        .run(&mw1, HookPoint::PostActivate, &r2, &quiet(&mw1))
        .await
        .unwrap();
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        format!("{r1} {}", dir.join(r1.as_str()).display())
    );

    let failing = Hooks::new(hosts(&fleet), t.config())
        .unwrap()
        .global(HookPoint::PostCopy, argvs(&[&["false"]]))
        .unwrap();
    let err = failing
        .run(&mw1, HookPoint::PostCopy, &r2, &quiet(&mw1))
        .await
        .unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Permanent);
    assert_eq!(err.server.as_ref(), Some(&mw1.id));
    assert!(
        err.detail
            .contains("post_copy hook false exited with status 1"),
        "{err}"
    );
}

/// A throw-away deploy user: sshd lets it in with the fleet's client key, and sudo lets
/// it run exactly the crate's remote commands (and the reload hook) as root. Removed on
/// drop, also when the test fails.
struct DeployUser {
    name: String,
    uid: u32,
    sudoers: std::path::PathBuf,
}

impl DeployUser {
    fn create(fleet: &testfleet::Fleet, also: &[&str]) -> DeployUser {
        require(&["sudo", "useradd", "usermod", "userdel", "visudo"]);
        let name = format!("mwdt{}", std::process::id() % 1_000_000);
        let run = |cmd: &mut std::process::Command| {
            let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
            assert!(out.status.success(), "{cmd:?}: {out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let _ = std::process::Command::new("userdel")
            .args(["-r", "-f", &name])
            .output();
        run(std::process::Command::new("useradd").args(["-m", "-s", "/bin/sh", &name]));
        let user = DeployUser {
            uid: run(std::process::Command::new("id").args(["-u", &name]))
                .trim()
                .parse()
                .unwrap(),
            sudoers: std::path::PathBuf::from(format!("/etc/sudoers.d/mwdeploy-test-{name}")),
            name,
        };
        // sshd (without PAM) refuses a locked account; "*" is unlocked, with no password.
        run(std::process::Command::new("usermod").args(["-p", "*", &user.name]));
        // sshd reads the fleet's authorized key as the user: let it through the folder.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(fleet.root(), fs::Permissions::from_mode(0o711)).unwrap();
        // Each command as sudo finds it (secure_path order).
        let secure = [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ];
        let mut allowed: Vec<String> = mwdeploy_rsync::REMOTE_COMMANDS
            .iter()
            .map(|c| {
                secure
                    .iter()
                    .map(|d| Path::new(d).join(c))
                    .find(|p| p.is_file())
                    .unwrap_or_else(|| panic!("{c} is not installed: run scripts/install-deps.sh"))
                    .display()
                    .to_string()
            })
            .collect();
        allowed.extend(also.iter().map(|s| s.to_string()));
        let text = format!(
            "{} ALL=(root) NOPASSWD: {}\n",
            user.name,
            allowed.join(", ")
        );
        let draft = fleet.root().join("sudoers-draft");
        fs::write(&draft, &text).unwrap();
        run(std::process::Command::new("visudo").arg("-cf").arg(&draft));
        fs::write(&user.sudoers, &text).unwrap();
        fs::set_permissions(&user.sudoers, fs::Permissions::from_mode(0o440)).unwrap();
        user
    }
}

impl Drop for DeployUser {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.sudoers);
        let _ = std::process::Command::new("userdel")
            .args(["-r", "-f", &self.name])
            .output();
    }
}

#[tokio::test]
async fn a_non_root_deploy_user_with_sudo_deploys_end_to_end_and_keeps_hard_links() {
    let fleet = fleet(1, 0, Layout::Releases);
    let site = &fleet.servers()[0];
    let reload = site.reload_command()[0].clone();
    let user = DeployUser::create(&fleet, &[&reload]);
    let mw1 = server(&fleet, 0);
    let mut c = config(&fleet, Layout::Releases);
    c.chown = Some(format!("{0}:{0}", user.name));
    c.keep_releases = 2;
    let deploy_info = mwdeploy_rsync::DeployInfo::new("sudo-deploy");

    // Without sudo the same user cannot write a release: sudo is what makes it work.
    let plain = hosts_as(&fleet, &user.name, false);
    let t =
        mwdeploy_rsync::RsyncTransfer::new(c.clone(), plain.clone(), deploy_info.clone()).unwrap();
    let err = within("copy without sudo", t.copy(&mw1, &release(1), &quiet(&mw1)))
        .await
        .unwrap_err();
    assert!(err.detail.contains("Permission denied"), "{err}");
    plain.close().await;

    let hosts = hosts_as(&fleet, &user.name, true);
    let t = mwdeploy_rsync::RsyncTransfer::new(c.clone(), hosts.clone(), deploy_info).unwrap();
    let hooks = Hooks::new(hosts.clone(), &c)
        .unwrap()
        .global(HookPoint::PostActivate, argvs(&[&["sudo", "-n", &reload]]))
        .unwrap();
    let q = quiet(&mw1);
    let r: Vec<_> = (1..=3).map(release).collect();
    for (i, id) in r.iter().enumerate() {
        write_stamp(fleet.staging().path(), &format!("r{}", i + 1)).unwrap();
        within("deploy", deploy(&t, &mw1, id)).await;
        within("reload", hooks.run(&mw1, HookPoint::PostActivate, id, &q))
            .await
            .unwrap();
        assert_eq!(stamp(&fleet, 0), format!("r{}", i + 1));
    }

    // Owners and modes alike in every release: unchanged files stay hard links.
    let dir = site.releases_dir();
    let (a, b) = (
        snapshot(&dir.join(r[1].as_str())),
        snapshot(&dir.join(r[2].as_str())),
    );
    let mut unchanged = 0;
    for (path, e) in &b {
        if path == MANIFEST_FILE {
            continue; // the transfer's own record, written as root
        }
        assert_eq!(e.uid, user.uid, "{path} belongs to the chown user");
        if a.get(path).is_some_and(|o| o.bytes == e.bytes) {
            assert_eq!(e.ino, a[path].ino, "{path}: a hard link");
            assert!(e.nlink >= 2, "{path}");
            unchanged += 1;
        }
    }
    assert!(
        unchanged + 3 >= b.len() && unchanged > 50,
        "{unchanged} of {}",
        b.len()
    );
    // Pruning ran through sudo: the first release is gone.
    assert_eq!(release_dirs(dir), {
        let mut v = vec![r[0].to_string(), r[1].to_string(), r[2].to_string()];
        v.sort();
        v
    });
    // And the switch back, through sudo too.
    assert_eq!(t.rollback(&mw1, &q).await.unwrap(), r[1]);
    hooks
        .run(&mw1, HookPoint::PostActivate, &r[2], &q)
        .await
        .unwrap();
    assert_eq!(stamp(&fleet, 0), "r2");
    hosts.close().await;
    drop(user);
}

/// The transfers that wrap rsync's (a rollback's, a recovery's, the in-place warm-up)
/// and the hooks pass the same conformance suite against the real fleet.
#[tokio::test]
async fn every_transfer_of_the_crate_and_its_hooks_conform_against_real_rsync() {
    use std::sync::Arc;

    use mwdeploy_rsync::{RecoverTransfer, RollbackTransfer, WarmAhead};
    use mwdeploy_sim::conformance::{
        hook_failure_names_its_point, hook_without_commands_is_a_no_op,
    };

    let fleet = fleet(1, 0, Layout::Releases);
    let mw1 = server(&fleet, 0);
    let t = transfer(&fleet, config(&fleet, Layout::Releases));
    // Two releases on the server, so that a rollback has somewhere to go.
    // (A release id holds the time it was made: each is made once.)
    let (r1, r2, r3) = (release(1), release(2), release(3));
    for (n, r) in [(1, &r1), (2, &r2)] {
        write_stamp(fleet.staging().path(), &format!("c{n}")).unwrap();
        let p = quiet(&mw1);
        t.copy(&mw1, r, &p).await.unwrap();
        t.activate(&mw1, r, &p).await.unwrap();
    }
    // A rollback's transfer: its "activate" goes back to c1, its rollback to c2 again.
    let back = RollbackTransfer::new(transfer(&fleet, config(&fleet, Layout::Releases)), None);
    within(
        "rollback transfer",
        transfer_copy_activate_rollback(&back, &mw1, &r1),
    )
    .await
    .unwrap();
    assert_eq!(stamp(&fleet, 0), "c2");
    // A recovery's: copies nothing for a whole server, rolls back as rsync's does.
    let recover = RecoverTransfer::new(
        transfer(&fleet, config(&fleet, Layout::Releases)),
        BTreeSet::new(),
        true,
    );
    within(
        "recover transfer",
        transfer_copy_activate_rollback(&recover, &mw1, &live(&fleet, 0)),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // The warm-up passes everything through.
    write_stamp(fleet.staging().path(), "c3").unwrap();
    let plan = mwdeploy_core::Plan::new("warm", r3.clone(), Layout::Releases, vec![mw1.clone()]);
    let warm = WarmAhead::new(
        Arc::new(transfer(&fleet, config(&fleet, Layout::Releases))),
        hosts(&fleet),
        &plan,
    );
    within(
        "warm transfer",
        transfer_copy_activate_rollback(&warm, &mw1, &r3),
    )
    .await
    .unwrap();

    // Hooks: none at a point is a no-op; a failing one names its point.
    let none = Hooks::new(hosts(&fleet), &config(&fleet, Layout::Releases)).unwrap();
    hook_without_commands_is_a_no_op(&none, &mw1, HookPoint::PostRepool, &r3)
        .await
        .unwrap();
    let failing = Hooks::new(hosts(&fleet), &config(&fleet, Layout::Releases))
        .unwrap()
        .global(HookPoint::PostRepool, vec![vec!["false".to_string()]])
        .unwrap();
    let mut hooked = mw1.clone();
    hooked.hooks = failing.points(&mw1.id);
    hook_failure_names_its_point(&failing, &hooked, HookPoint::PostRepool, &r3)
        .await
        .unwrap();
}
