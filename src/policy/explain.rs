//! `ketenpoort policy explain`: a plain-text account of one flow and what happens to every field of
//! its message type, for privacy officers. Reads the loaded set only.

use std::fmt::Write;

use super::{
    codes, Flow, MessageCatalogue, PolicySet, ReceiverBinding, Refusal, RuleAction, SubjectDelivery,
};
use crate::domain::Role;

fn roles(r: &[Role]) -> String {
    r.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
}

/// (action, reason/notes) of one catalogue field in `flow`.
fn describe(flow: &Flow, cat: &MessageCatalogue, path: &str) -> (String, String) {
    let field = cat.field(path);
    let closed = field
        .and_then(|f| f.values.as_ref())
        .map(|v| format!("; closed list: {}", v.join(", ")))
        .unwrap_or_default();
    let Some(rule) = flow.rule_for(path) else {
        return ("withhold".into(), "not-in-flow".into());
    };
    let consent = flow.consent || rule.action.needs_consent();
    let category = field.map(|f| f.category.as_str()).unwrap_or("-");
    let with_consent = |what: &str| {
        if consent {
            format!("{what} with consent ({category})")
        } else {
            what.to_owned()
        }
    };
    let action = match &rule.action {
        RuleAction::Allow | RuleAction::Consent => with_consent("deliver"),
        RuleAction::Generalise { method, .. } => {
            with_consent(&format!("generalise {}", method.name()))
        }
        RuleAction::Pseudonymise { .. } => with_consent("pseudonymise"),
        RuleAction::Deny { .. } => "withhold".into(),
    };
    let note = match &rule.action {
        RuleAction::Deny { reason } => format!("deny: {reason}"),
        _ => format!("rule `{}`{closed}", rule.pattern_text),
    };
    let note = match &rule.note {
        Some(n) => format!("{note} — {n}"),
        None => note,
    };
    (action, note)
}

fn table(rows: &[[String; 5]]) -> String {
    let mut widths = [0usize; 5];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Explains the flow for (from, to, purpose), or refuses with `no-policy` when none is written.
pub fn explain(policy: &PolicySet, from: Role, to: Role, purpose: &str) -> Result<String, Refusal> {
    let flow = policy.find_flow(from, to, purpose).ok_or_else(|| {
        Refusal::new(
            codes::NO_POLICY,
            format!("no flow allows {from} → {to} for purpose {purpose}"),
        )
    })?;
    let cat = policy.catalogue(&flow.message_type).ok_or_else(|| {
        Refusal::new(
            codes::NO_POLICY,
            format!("flow {} has no catalogue", flow.id),
        )
    })?;
    let mut s = String::new();
    let _ = writeln!(s, "Flow {} — {}", flow.id, flow.name);
    let _ = writeln!(
        s,
        "  file:           {} (policy set {})",
        flow.file,
        policy.hash()
    );
    let _ = writeln!(
        s,
        "  from → to:      {} → {}",
        roles(&flow.senders),
        roles(&flow.receivers)
    );
    let _ = writeln!(s, "  purpose:        {}", flow.purpose);
    let _ = writeln!(s, "  message type:   {}", flow.message_type);
    let _ = writeln!(s, "  legal basis:    {}", flow.legal_basis);
    let _ = writeln!(
        s,
        "  gateway keeps:  {} days unacknowledged, then purged (message-expired when never fetched)",
        flow.retention.gateway_days
    );
    let receiver = &flow.retention.receiver;
    match receiver.days {
        Some(days) => {
            let _ = writeln!(
                s,
                "  receiver keeps: {} ({days} days; told to the receiver, not enforced by the gateway)",
                receiver.text
            );
        }
        None => {
            let _ = writeln!(
                s,
                "  receiver keeps: {} (told to the receiver, not enforced by the gateway)",
                receiver.text
            );
        }
    }
    let _ = writeln!(
        s,
        "  justification:  {}",
        if flow.justification_required {
            "required"
        } else {
            "optional (required anyway when an S4/art. 10 field is delivered)"
        }
    );
    let _ = writeln!(
        s,
        "  consent:        {}",
        if flow.consent {
            "the whole flow rests on consent; without a valid consent the message is refused"
        } else {
            "not for the flow as a whole"
        }
    );
    let _ = writeln!(
        s,
        "  who consents:   the sender's own consent only; by the sender's law and the pupil's age: UAVG art. 5 \
         (schools, SWVs), Jeugdwet art. 7.3.11 (jeugdhulp = true); parents' own data: the parents{}",
        if flow.consent_12_15_both {
            "; 12 to 15: ouder-en-jongere (a policy choice, stricter than the law)"
        } else {
            ""
        }
    );
    let subject = match flow.subject {
        SubjectDelivery::AsIs => format!(
            "delivered as is (basis: {})",
            flow.subject_basis.as_deref().unwrap_or("-")
        ),
        SubjectDelivery::Pseudonymise => {
            "a pseudonym, different for every receiving organisation".into()
        }
        SubjectDelivery::None => "not delivered".into(),
    };
    let _ = writeln!(s, "  pupil number:   {subject}");
    let receiver = match &flow.receiver {
        None => "any partner of a receiving role (no binding to the case)".to_owned(),
        Some(ReceiverBinding::Field(path)) => format!("only the organisation `{path}` names"),
        Some(ReceiverBinding::MemberOfSender) => "only an SWV the sending school belongs to".into(),
        Some(ReceiverBinding::ServesWoongemeente) => {
            "only an organisation serving the pupil's leerling.woongemeente".into()
        }
        Some(ReceiverBinding::JgzOfSender) => "only the JGZ attached to the sending school".into(),
        Some(ReceiverBinding::InReplyTo) => format!(
            "only the sender of the {} this answers (in_reply_to)",
            flow.answers.as_deref().unwrap_or("message")
        ),
    };
    let _ = writeln!(
        s,
        "  receiver:       {receiver}; otherwise 403 receiver-not-responsible"
    );
    if let Some(a) = &flow.agreement {
        let _ = writeln!(
            s,
            "  agreement:      {} signed by {}, valid {} to {}",
            a.id,
            a.signatories.join(", "),
            a.valid_from,
            a.valid_until
        );
        if let Some(d) = &a.description {
            let _ = writeln!(s, "                  {d}");
        }
    }
    for r in &flow.required {
        let what = match (&r.equals, r.equals_receiver) {
            (Some(v), _) => format!("must be {v}"),
            (None, true) => "must name the receiving organisation".into(),
            (None, false) => "must be present".into(),
        };
        let hint = r
            .hint
            .as_deref()
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        let _ = writeln!(s, "  required:       {} {what}{hint}", r.path);
    }
    for l in &flow.screening {
        let _ = writeln!(
            s,
            "  screening:      {} {} when it names a term of {} ({} terms)",
            l.field,
            if l.withhold {
                "withheld (the rest goes)"
            } else {
                "refused as a whole"
            },
            l.category,
            l.terms.len()
        );
    }
    if let Some(a) = &flow.aggregate {
        let dims = a.dimension_labels();
        let _ = writeln!(
            s,
            "  aggregate:      counts only, at most {} of dimensions {}",
            a.max_dimensions,
            dims.join(", ")
        );
        let _ = writeln!(
            s,
            "                  categories {}",
            a.categories.join(", ")
        );
        let _ = writeln!(
            s,
            "                  cells of 1–{} suppressed, others rounded to base {}, secondary suppression {}",
            a.min_cell - 1,
            a.rounding,
            if a.secondary_suppression { "on" } else { "OFF" }
        );
        let _ = writeln!(s, "                  anything else, or a pupil number, is refused (person-level-in-aggregate)");
    }
    s.push('\n');

    let mut rows = vec![[
        "field".to_owned(),
        "category".to_owned(),
        "class".to_owned(),
        "action".to_owned(),
        "reason / rule".to_owned(),
    ]];
    for f in &cat.fields {
        let (action, note) = if let Some(a) = &flow.aggregate {
            if f.path == "cellen[].aantal" {
                (
                    format!("round to base {}", a.rounding),
                    format!("suppressed below {}", a.min_cell),
                )
            } else if f.path.starts_with("cellen[].")
                && f.path != "cellen[].categorie"
                && !a
                    .dimensions
                    .iter()
                    .any(|d| f.path == format!("cellen[].{}", d.name))
            {
                ("refuse".into(), "not an allowed dimension".into())
            } else {
                ("deliver".into(), "aggregate schema".into())
            }
        } else {
            describe(flow, cat, &f.path)
        };
        rows.push([
            f.path.clone(),
            f.category.clone(),
            f.class.as_str().to_owned(),
            action,
            note,
        ]);
    }
    let other = if flow.aggregate.is_some() {
        ("refuse", "person-level-in-aggregate")
    } else {
        ("withhold", "not-in-catalogue")
    };
    rows.push([
        "(any other field)".into(),
        "-".into(),
        "-".into(),
        other.0.into(),
        other.1.into(),
    ]);
    s.push_str(&table(&rows));
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn set() -> PolicySet {
        PolicySet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
    }

    #[test]
    fn explains_p1_field_by_field() {
        let text = explain(&set(), Role::SchoolPo, Role::SchoolVo, "overstap-po-vo").unwrap();
        let line = |p: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{p} ")))
                .unwrap_or_else(|| panic!("no line for {p} in\n{text}"))
                .to_owned()
        };
        assert!(line("bijlagen[].inhoud").contains("deliver with consent (ATT)"));
        assert!(line("jeugdhulp.inhoud").contains("withhold"));
        assert!(line("jeugdhulp.inhoud").contains("deny:"));
        assert!(line("thuissituatie.zorgpunt").contains("deliver"));
        assert!(line("thuissituatie.details").contains("withhold"));
        assert!(line("leerling.achternaam").contains("ADM"));
        assert!(text.contains("Flow P1"));
        assert!(text.contains("inzage.ouders_geinformeerd must be true"));
    }

    #[test]
    fn explains_p4_and_p7() {
        let p4 = explain(&set(), Role::SchoolPo, Role::Wijkteam, "vroegsignalering").unwrap();
        assert!(
            p4.contains("generalise date-year with consent (ADM)"),
            "{p4}"
        );
        assert!(p4.contains("pupil number:   not delivered"), "{p4}");
        let p7 = explain(
            &set(),
            Role::Leerplicht,
            Role::SwvVo,
            "monitoring-thuiszitters",
        )
        .unwrap();
        assert!(p7.contains("agreement:"), "{p7}");
        assert!(p7.contains("person-level-in-aggregate"), "{p7}");
    }

    #[test]
    fn an_unwritten_flow_is_refused() {
        let r = explain(&set(), Role::Wijkteam, Role::SwvVo, "overstap-po-vo").unwrap_err();
        assert_eq!(r.code, "no-policy");
    }
}
