//! `ketenpoort policy diff OLD NEW` as a privacy officer runs it, on two copies of `policies/`: exit 0 and "no
//! difference" for identical sets, exit 1 naming the field, its old and its new action when one rule changes, and
//! exit 2 naming the file when a directory does not load.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};

fn copy_policies(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(root().join("policies")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

fn policy_diff(old: &Path, new: &Path) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(["policy", "diff"])
        .arg(old)
        .arg(new)
        .output()
        .expect("run ketenpoort");
    (
        status.code().expect("exit code"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

#[test]
fn policy_diff_names_the_field_whose_action_changes() {
    let dir = TempDir::new("kp-policy-diff-");
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    copy_policies(&old);
    copy_policies(&new);

    let (code, out, err) = policy_diff(&old, &new);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Geen verschil"), "{out}");

    // P4 rests on consent: turn its first `consent` field rule into `allow`.
    let (file, text, line, path) = first_consent_rule(&new, "P4");
    std::fs::write(
        &file,
        text.replacen(
            &line,
            &line.replacen("action = \"consent\"", "action = \"allow\"", 1),
            1,
        ),
    )
    .unwrap();
    let (code, out, err) = policy_diff(&old, &new);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("Flow P4 — "), "{out}");
    assert!(out.contains("Verschillen: 1 flow gewijzigd."), "{out}");
    assert!(
        out.contains(&format!(
            "    {path}: verstrekken, alleen met toestemming → verstrekken\n"
        )),
        "{out}"
    );
    // Only that field: no other flow, no catalogue.
    assert_eq!(out.matches("\nFlow ").count(), 1, "{out}");
    assert!(!out.contains("Berichttype "), "{out}");

    // A directory that does not load is an error naming the file (exit 2), whichever side it is.
    std::fs::write(new.join("zz-broken.toml"), "this is [not valid toml").unwrap();
    for (a, b) in [(&old, &new), (&new, &old)] {
        let (code, out, err) = policy_diff(a, b);
        assert_eq!(code, 2, "{out}{err}");
        assert!(out.is_empty(), "{out}");
        assert!(
            err.contains(&format!("{}:1:", new.join("zz-broken.toml").display())),
            "{err}"
        );
    }
}
