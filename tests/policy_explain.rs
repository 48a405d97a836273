//! `ketenpoort policy explain` and `policy check` as a privacy officer runs them, on a copy of `policies/`: the
//! explanation is in Dutch with each field's label beside its path and a legend, and a catalogue field without a
//! label makes both refuse the whole set, naming the file and line.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn copy_policies(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(root().join("policies")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// Runs `ketenpoort policy ARGS…`: (success, stdout, stderr).
fn policy(args: &[&str], dir: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .arg("policy")
        .args(args)
        .arg(dir)
        .output()
        .expect("run ketenpoort");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const P4: [&str; 7] = [
    "explain",
    "--from",
    "school-po",
    "--to",
    "wijkteam",
    "--purpose",
    "vroegsignalering",
];

#[test]
fn explain_is_dutch_with_labels_and_a_legend_and_a_field_without_label_refuses_the_set() {
    let dir = TempDir::new("kp-explain-");
    copy_policies(dir.path());
    let mut explain = P4.to_vec();
    explain.push("--policies");
    let (ok, out, err) = policy(&explain, dir.path());
    assert!(ok, "{err}");
    assert!(out.starts_with("Flow P4 — "), "{out}");
    let line = |path: &str| {
        out.lines()
            .find(|l| l.contains(&format!("  {path}  ")))
            .unwrap_or_else(|| panic!("no line for {path}:\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        line("leerling.achternaam").starts_with(
            "Achternaam leerling leerling.achternaam ADM S1 alleen met toestemming (ADM)"
        ),
        "{out}"
    );
    assert!(
        line("leerling.geboortedatum")
            .contains("gegeneraliseerd: alleen het jaar, alleen met toestemming (ADM)"),
        "{out}"
    );
    assert!(
        line("ondersteuning.opp").contains("BEG S3 geweigerd"),
        "{out}"
    );
    let fact = |heading: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("  {heading}: ")))
            .unwrap_or_else(|| panic!("no {heading}:\n{out}"))
            .to_owned()
    };
    assert!(fact("ontvanger bewaart")
        .contains("meegedeeld aan de ontvanger, niet afgedwongen door de gateway"));
    assert!(fact("leerlingnummer").ends_with(" niet verstrekt"));
    assert!(fact("grondslag").contains("AVG art. 6 lid 1 sub a"));
    for text in [
        "\nLegenda\n",
        "\n    gepseudonimiseerd ",
        "\n    S4      bijzondere persoonsgegevens (AVG art. 9",
        "\n    THUIS   Thuissituatie\n",
    ] {
        assert!(out.contains(text), "{text:?} missing:\n{out}");
    }
    let mut unknown = P4.to_vec();
    unknown[6] = "geen-doel";
    unknown.push("--policies");
    let (ok, _, err) = policy(&unknown, dir.path());
    assert!(!ok);
    assert!(
        err.contains("geen flow staat school-po → wijkteam toe voor doel geen-doel (no-policy)"),
        "{err}"
    );

    // The label of P4's `zorg.omschrijving` taken out: the set does not load, explain and check say where.
    let catalogue = dir.path().join("catalogue.toml");
    let text = std::fs::read_to_string(&catalogue).unwrap();
    let field = text
        .lines()
        .position(|l| l.contains(r#"path = "zorg.omschrijving""#))
        .expect("P4's field in the catalogue");
    let label = r#"label = "Zorg om de leerling (in woorden van de school)","#;
    assert!(text.contains(label));
    std::fs::write(&catalogue, text.replacen(label, "", 1)).unwrap();
    let (ok, out, err) = policy(&explain, dir.path());
    assert!(!ok, "{out}");
    let at = format!("catalogue.toml:{}:", field + 1);
    assert!(
        err.contains(&at) && err.contains("missing field `label`"),
        "{at}: {err}"
    );
    let (ok, out, _) = policy(&["check"], dir.path());
    assert!(!ok, "{out}");
    assert!(
        out.contains(&at) && out.contains("missing field `label`"),
        "{at}: {out}"
    );
}
