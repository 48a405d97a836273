//! Fuzzes the field filter with the shipped policies: `cargo +nightly fuzz run field_filter
//! corpus/envelope`. Arbitrary JSON as `data`, for every flow, with and without a consent for
//! everything: never a panic; what is delivered is only ever what the flow allows.
#![no_main]

use std::sync::OnceLock;

use ketenpoort::domain::{ConsentRecord, GivenBy, Partner, Role, SubjectId, SubjectKind};
use ketenpoort::policy::{decide, strip_paths, DecisionRequest, FieldAction, PolicySet};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn policies() -> &'static PolicySet {
    static SET: OnceLock<PolicySet> = OnceLock::new();
    SET.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        PolicySet::load_dir(&dir).expect("the shipped policies load")
    })
}

fn partner(id: &str, role: Role) -> Partner {
    Partner {
        id: id.to_owned(),
        name: id.to_owned(),
        role,
        oin: "00000001800000000001".to_owned(),
        organisation: None,
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(mut data) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    if let Some(inner) = data.get("data").cloned() {
        data = inner;
    }
    let today = time::Date::from_calendar_date(2026, time::Month::June, 1).unwrap();
    let subject = SubjectId::new(SubjectKind::Pgn, "628194821").unwrap();
    for flow in policies().flows() {
        let sender = partner("leerplicht-gemeente", flow.senders[0]);
        let receiver = partner("swv-vo-zuid", flow.receivers[0]);
        let all = ConsentRecord {
            consent_id: "c1".into(),
            registered_by: sender.id.clone(),
            purpose: flow.purpose.clone(),
            recipient: receiver.id.clone(),
            categories: vec!["*".into()],
            given_by: GivenBy::OuderEnJongere,
            valid_from: today,
            valid_until: today,
            withdrawn: false,
        };
        for consents in [vec![], vec![all]] {
            let req = DecisionRequest {
                sender: &sender,
                receiver: &receiver,
                message_type: &flow.message_type,
                purpose: &flow.purpose,
                subject: flow.aggregate.is_none().then_some(&subject),
                justification: Some("Fuzzing: noodzakelijk en niets lichters volstaat."),
                data: &data,
                consents: &consents,
                today,
                pseudonym_key: b"fuzz",
            };
            let Ok(d) = decide(policies(), &req) else {
                continue;
            };
            let cat = policies().catalogue(&flow.message_type).unwrap();
            for f in d.fields.iter().filter(|f| f.action.is_delivered()) {
                let path = f
                    .catalogue_path
                    .as_deref()
                    .expect("delivered fields are catalogued");
                assert!(cat.field(path).is_some());
                if flow.aggregate.is_none() {
                    let rule = flow.rule_for(path).expect("delivered fields are named");
                    assert!(rule.action.delivers());
                    if flow.consent || rule.action.needs_consent() {
                        assert_eq!(f.consent_id.as_deref(), Some("c1"));
                    }
                }
                if f.action == FieldAction::Delivered {
                    assert!(d.delivered.is_object());
                }
            }
            let mut delivered = d.delivered.clone();
            let paths: Vec<String> = d.consent_dependent().into_iter().map(|(p, _)| p).collect();
            strip_paths(&mut delivered, &paths);
        }
    }
});
