//! The receiver bound to the pupil's case (DOMAIN.md "Who is responsible for a pupil"): before anything is
//! delivered, the receiver must be the organisation responsible for this pupil, from the facts of `partners.toml`,
//! the message and the message it answers.
//!
//! Pure, like `decide`: the caller (`exchange::send`, phase *case*) looks the referenced message up and passes the
//! facts in. Refusal details name rules, flows and field paths, never a value of the message, a gemeentecode or
//! another organisation's message.

use crate::data::Node;
use crate::domain::{Partner, Responsibilities};

use super::{codes, path, Flow, Refusal};

/// Who may receive a flow's message (`receiver` in a flow file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiverBinding {
    /// A field of the message names the receiving organisation (P1: `aanmelding.school`).
    Field(String),
    /// The receiver is an SWV the sending school belongs to (`swv` in `partners.toml`; P2, P12).
    MemberOfSender,
    /// The receiver serves the pupil's woongemeente, `leerling.woongemeente` (`gemeenten`; P3, P4, P9).
    ServesWoongemeente,
    /// The receiver is the JGZ attached to the sending school (`jgz`; P10).
    JgzOfSender,
    /// The receiver sent the message this one answers (`in_reply_to`), about the same pupil (P5, P6, P11).
    InReplyTo,
    /// The receiver got the message this one follows (`in_reply_to`) from the same sender, in the same direction,
    /// about the same pupil (P8 follows a P1 to the same school).
    Follows,
}

impl ReceiverBinding {
    /// The keywords of the policy language; any other value is a catalogue path.
    pub const KEYWORDS: [&'static str; 5] = [
        "member-of-sender",
        "serves-woongemeente",
        "jgz-of-sender",
        "in-reply-to",
        "follows",
    ];

    pub fn parse(s: &str) -> ReceiverBinding {
        match s {
            "member-of-sender" => ReceiverBinding::MemberOfSender,
            "serves-woongemeente" => ReceiverBinding::ServesWoongemeente,
            "jgz-of-sender" => ReceiverBinding::JgzOfSender,
            "in-reply-to" => ReceiverBinding::InReplyTo,
            "follows" => ReceiverBinding::Follows,
            path => ReceiverBinding::Field(path.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ReceiverBinding::Field(path) => path,
            ReceiverBinding::MemberOfSender => "member-of-sender",
            ReceiverBinding::ServesWoongemeente => "serves-woongemeente",
            ReceiverBinding::JgzOfSender => "jgz-of-sender",
            ReceiverBinding::InReplyTo => "in-reply-to",
            ReceiverBinding::Follows => "follows",
        }
    }

    /// In plain words, for `explain` and the README.
    pub fn describe(&self) -> String {
        match self {
            ReceiverBinding::Field(path) => format!("only the organisation named in `{path}`"),
            ReceiverBinding::MemberOfSender => {
                "only a samenwerkingsverband the sending school belongs to".into()
            }
            ReceiverBinding::ServesWoongemeente => {
                format!(
                    "only an organisation serving the pupil's woongemeente (`{WOONGEMEENTE_PATH}`)"
                )
            }
            ReceiverBinding::JgzOfSender => "only the JGZ attached to the sending school".into(),
            ReceiverBinding::InReplyTo => {
                "only the organisation that sent the message answered (`in_reply_to`)".into()
            }
            ReceiverBinding::Follows => {
                "only the organisation the sender sent the message followed (`in_reply_to`) to"
                    .into()
            }
        }
    }

    /// Whether the flow's `in_reply_to` names an earlier message (`in-reply-to`, `follows`).
    pub fn refers(&self) -> bool {
        matches!(self, ReceiverBinding::InReplyTo | ReceiverBinding::Follows)
    }
}

/// Where the pupil's woongemeente (CBS gemeentecode) is read from.
pub const WOONGEMEENTE_PATH: &str = "leerling.woongemeente";

/// Whether a flow id is flow `family` or one of its variants: `answers = "P1"` is met by `P1` and by `P1-wpo`,
/// `P1-wec-so`, `P1-wec-vso`, `P1-wvo` (one flow per legal basis), never by `P10` or `P11`.
pub fn is_flow_of(id: &str, family: &str) -> bool {
    id == family
        || id
            .strip_prefix(family)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// The disclosure a reply's `in_reply_to` names, as the log recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference<'a> {
    pub sender: &'a str,
    pub receiver: &'a str,
    pub flow_id: Option<&'a str>,
    /// The keyed pseudonym of its pupil.
    pub subject: Option<&'a str>,
    /// Recalled by its sender, reported misaddressed by its receiver, or of unknown status: nothing may follow it
    /// (`follows`). A reply (`in-reply-to`) may still answer it.
    pub withdrawn: bool,
}

/// Everything the binding depends on.
pub struct CaseFacts<'a> {
    pub sender: &'a Partner,
    pub sender_responsible: &'a Responsibilities,
    pub receiver: &'a Partner,
    pub receiver_responsible: &'a Responsibilities,
    /// The envelope's `data`.
    pub data: &'a Node<'a>,
    /// Whether the envelope has `in_reply_to`.
    pub in_reply_to: bool,
    /// The disclosed message `in_reply_to` names, when there is one that the sender was party to (as sender or
    /// receiver); `None` otherwise, and the caller may not learn which.
    pub reference: Option<Reference<'a>>,
    /// The keyed pseudonym of the envelope's subject, if it names one.
    pub subject: Option<&'a str>,
}

fn not_responsible(flow: &Flow, why: impl std::fmt::Display) -> Refusal {
    Refusal::new(
        codes::RECEIVER_NOT_RESPONSIBLE,
        format!(
            "flow {}: the receiver is not responsible for this pupil: {why}; nothing was delivered",
            flow.id
        ),
    )
}

/// Refuses the message unless its receiver is the organisation the flow binds it to.
pub fn bind_receiver(flow: &Flow, f: &CaseFacts) -> Result<(), Refusal> {
    let Some(binding) = &flow.receiver else {
        if f.in_reply_to {
            return Err(Refusal::new(
                codes::INVALID_ENVELOPE,
                format!(
                    "flow {} answers no message: `in_reply_to` is not allowed",
                    flow.id
                ),
            ));
        }
        return Ok(());
    };
    if f.in_reply_to && !binding.refers() {
        return Err(Refusal::new(
            codes::INVALID_ENVELOPE,
            format!(
                "flow {} answers no message: `in_reply_to` is not allowed",
                flow.id
            ),
        ));
    }
    match binding {
        ReceiverBinding::Field(field) => {
            let named = path::get_dotted(f.data, field)
                .and_then(Node::as_str)
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| {
                    Refusal::new(
                        codes::MISSING_REQUIRED_FIELD,
                        format!(
                            "flow {}: field `{field}` must name the receiving organisation",
                            flow.id
                        ),
                    )
                })?;
            if named != f.receiver.organisation_id() {
                return Err(not_responsible(
                    flow,
                    format_args!("`{field}` names another organisation"),
                ));
            }
        }
        ReceiverBinding::MemberOfSender => {
            if !f.sender_responsible.swv.iter().any(|s| s == &f.receiver.id) {
                return Err(not_responsible(
                    flow,
                    "the sending school does not belong to this samenwerkingsverband",
                ));
            }
        }
        ReceiverBinding::JgzOfSender => {
            if !f.sender_responsible.jgz.iter().any(|s| s == &f.receiver.id) {
                return Err(not_responsible(
                    flow,
                    "this is not the JGZ attached to the sending school",
                ));
            }
        }
        ReceiverBinding::ServesWoongemeente => {
            let gemeente = path::get_dotted(f.data, WOONGEMEENTE_PATH)
                .and_then(Node::as_str)
                .filter(|g| crate::domain::is_gemeentecode(g))
                .ok_or_else(|| {
                    Refusal::new(
                        codes::MISSING_REQUIRED_FIELD,
                        format!(
                            "flow {}: field `{WOONGEMEENTE_PATH}` must be the CBS gemeentecode (4 digits) of where the pupil lives",
                            flow.id
                        ),
                    )
                })?;
            if !f
                .receiver_responsible
                .gemeenten
                .iter()
                .any(|g| g == gemeente)
            {
                return Err(not_responsible(
                    flow,
                    "it does not serve the pupil's woongemeente",
                ));
            }
        }
        ReceiverBinding::InReplyTo | ReceiverBinding::Follows => {
            let answers = flow.answers.as_deref().unwrap_or("?");
            let follows = *binding == ReceiverBinding::Follows;
            let what = if follows { "follows" } else { "answers" };
            if !f.in_reply_to {
                return Err(Refusal::new(
                    codes::MISSING_REQUIRED_FIELD,
                    format!(
                        "flow {} {what} a {answers}: `in_reply_to` must name its message id",
                        flow.id
                    ),
                ));
            }
            let r = f.reference.ok_or_else(|| {
                Refusal::new(
                    codes::UNKNOWN_REFERENCE,
                    "`in_reply_to` names no message sent to or by this organisation",
                )
            })?;
            if follows {
                if r.sender != f.sender.id || r.receiver != f.receiver.id {
                    return Err(not_responsible(
                        flow,
                        "the message followed did not go from the sender to this receiver",
                    ));
                }
                if r.withdrawn {
                    return Err(not_responsible(
                        flow,
                        "the message followed was recalled or reported misaddressed (or its status is unknown)",
                    ));
                }
            } else if r.sender != f.receiver.id || r.receiver != f.sender.id {
                return Err(not_responsible(
                    flow,
                    "the message answered did not come from this receiver to the sender",
                ));
            }
            if !r.flow_id.is_some_and(|id| is_flow_of(id, answers)) {
                let noun = if follows { "followed" } else { "answered" };
                return Err(not_responsible(
                    flow,
                    format_args!("the message {noun} is not a {answers}"),
                ));
            }
            if let (Some(mine), Some(theirs)) = (f.subject, r.subject) {
                if mine != theirs {
                    let noun = if follows { "followed" } else { "answered" };
                    return Err(not_responsible(
                        flow,
                        format_args!("the message {noun} is about another pupil"),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;
    use serde_json::json;

    fn set() -> &'static super::super::PolicySet {
        static SET: std::sync::OnceLock<super::super::PolicySet> = std::sync::OnceLock::new();
        SET.get_or_init(|| {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
            super::super::PolicySet::load_dir(&dir).unwrap()
        })
    }

    fn flow(id: &str) -> &'static Flow {
        set().flows().find(|f| f.id == id).unwrap()
    }

    fn partner(id: &str, role: Role) -> Partner {
        Partner {
            id: id.into(),
            name: id.into(),
            role,
            oin: "00000001800000000001".into(),
            organisation: None,
        }
    }

    fn serves(g: &[&str]) -> Responsibilities {
        Responsibilities {
            gemeenten: g.iter().map(|g| g.to_string()).collect(),
            ..Responsibilities::default()
        }
    }

    struct Case {
        sender: Partner,
        receiver: Partner,
        sender_r: Responsibilities,
        receiver_r: Responsibilities,
        data: serde_json::Value,
    }

    impl Case {
        fn new(sender: Partner, receiver: Partner) -> Case {
            Case {
                sender,
                receiver,
                sender_r: Responsibilities::default(),
                receiver_r: Responsibilities::default(),
                data: json!({}),
            }
        }

        fn bind(
            &self,
            flow_id: &str,
            in_reply_to: bool,
            reference: Option<Reference>,
            subject: Option<&str>,
        ) -> Result<(), String> {
            let data = Node::from_value(&self.data);
            let facts = CaseFacts {
                sender: &self.sender,
                sender_responsible: &self.sender_r,
                receiver: &self.receiver,
                receiver_responsible: &self.receiver_r,
                data: &data,
                in_reply_to,
                reference,
                subject,
            };
            bind_receiver(flow(flow_id), &facts).map_err(|r| {
                assert!(!r.detail.contains("CANARY"), "{}", r.detail);
                r.code.as_str().to_owned()
            })
        }
    }

    #[test]
    fn the_flows_bind_their_receivers_as_domain_md_says() {
        let b = |id| flow(id).receiver.clone();
        assert_eq!(
            b("P1"),
            Some(ReceiverBinding::Field("aanmelding.school".into()))
        );
        assert_eq!(b("P2"), Some(ReceiverBinding::MemberOfSender));
        assert_eq!(b("P3"), Some(ReceiverBinding::ServesWoongemeente));
        assert_eq!(b("P4"), Some(ReceiverBinding::ServesWoongemeente));
        assert_eq!(b("P5"), Some(ReceiverBinding::InReplyTo));
        assert_eq!(flow("P5").answers.as_deref(), Some("P4"));
        assert_eq!(b("P6"), Some(ReceiverBinding::InReplyTo));
        assert_eq!(flow("P6").answers.as_deref(), Some("P3"));
        assert_eq!(b("P7"), None);
        for p1 in ["P1-wpo", "P1-wec-so", "P1-wec-vso", "P1-wvo"] {
            assert_eq!(
                b(p1),
                Some(ReceiverBinding::Field("aanmelding.school".into()))
            );
        }
        assert_eq!(b("P8"), Some(ReceiverBinding::Follows));
        assert_eq!(flow("P8").answers.as_deref(), Some("P1"));
        assert_eq!(b("P9"), Some(ReceiverBinding::ServesWoongemeente));
        assert_eq!(b("P10"), Some(ReceiverBinding::JgzOfSender));
        assert_eq!(b("P11"), Some(ReceiverBinding::InReplyTo));
        assert_eq!(flow("P11").answers.as_deref(), Some("P2"));
    }

    #[test]
    fn a_flow_family_is_the_flow_and_its_variants() {
        for yes in ["P1", "P1-wpo", "P1-wec-so", "P1-wvo"] {
            assert!(is_flow_of(yes, "P1"), "{yes}");
        }
        for no in ["P10", "P11", "P2", "P", "p1", "P1wpo", ""] {
            assert!(!is_flow_of(no, "P1"), "{no}");
        }
    }

    #[test]
    fn a_follow_up_goes_to_the_receiver_of_what_it_follows_in_the_same_direction() {
        let c = Case::new(
            partner("obs-de-linde", Role::SchoolPo),
            partner("lyceum-zuid", Role::SchoolVo),
        );
        let p1 = Reference {
            sender: "obs-de-linde",
            receiver: "lyceum-zuid",
            flow_id: Some("P1-wpo"),
            subject: Some("pupil-a"),
            withdrawn: false,
        };
        assert_eq!(c.bind("P8", true, Some(p1), Some("pupil-a")), Ok(()));
        for variant in ["P1", "P1-wec-so", "P1-wec-vso", "P1-wvo"] {
            let r = Reference {
                flow_id: Some(variant),
                ..p1
            };
            assert_eq!(c.bind("P8", true, Some(r), Some("pupil-a")), Ok(()));
        }
        assert_eq!(
            c.bind("P8", false, None, Some("pupil-a")).unwrap_err(),
            "missing-required-field"
        );
        assert_eq!(
            c.bind("P8", true, None, Some("pupil-a")).unwrap_err(),
            "unknown-reference"
        );
        let wrong = [
            // The other direction: a P1 the receiver sent to the sender (what `in-reply-to` accepts).
            Reference {
                sender: "lyceum-zuid",
                receiver: "obs-de-linde",
                ..p1
            },
            // The sender's P1 to another school.
            Reference {
                receiver: "mbo-college-zuid",
                ..p1
            },
            // Another school's P1 to this receiver.
            Reference {
                sender: "cbs-het-anker",
                ..p1
            },
            Reference {
                flow_id: Some("P10"),
                ..p1
            },
            Reference {
                flow_id: Some("P2"),
                ..p1
            },
            Reference {
                flow_id: None,
                ..p1
            },
        ];
        for r in wrong {
            assert_eq!(
                c.bind("P8", true, Some(r), Some("pupil-a")).unwrap_err(),
                "receiver-not-responsible",
                "{r:?}"
            );
        }
        assert_eq!(
            c.bind("P8", true, Some(p1), Some("pupil-b")).unwrap_err(),
            "receiver-not-responsible",
            "another pupil"
        );
        let recalled = Reference {
            withdrawn: true,
            ..p1
        };
        assert_eq!(
            c.bind("P8", true, Some(recalled), Some("pupil-a"))
                .unwrap_err(),
            "receiver-not-responsible",
            "a recalled or misaddressed P1"
        );
        // A P1 itself follows nothing.
        let mut c = c;
        c.data = json!({"aanmelding": {"school": "lyceum-zuid"}});
        assert_eq!(
            c.bind("P1-wpo", true, Some(p1), None).unwrap_err(),
            "invalid-envelope"
        );
    }

    #[test]
    fn p9_p10_and_p11_reach_only_the_responsible_receiver() {
        for from in [
            partner("obs-de-linde", Role::SchoolPo),
            partner("wijkteam-noord", Role::Wijkteam),
            partner("jgz-ggd-zuid", Role::Jgz),
        ] {
            let mut c = Case::new(from, partner("veilig-thuis-zuid", Role::VeiligThuis));
            c.receiver_r = serves(&["0599"]);
            c.data = json!({"leerling": {"woongemeente": "0599"}});
            assert_eq!(c.bind("P9", false, None, None), Ok(()));
            c.receiver_r = serves(&["0606"]);
            assert_eq!(
                c.bind("P9", false, None, None).unwrap_err(),
                "receiver-not-responsible"
            );
            c.data = json!({});
            assert_eq!(
                c.bind("P9", false, None, None).unwrap_err(),
                "missing-required-field"
            );
        }

        let mut c = Case::new(
            partner("obs-de-linde", Role::SchoolPo),
            partner("jgz-ggd-zuid", Role::Jgz),
        );
        assert_eq!(
            c.bind("P10", false, None, None).unwrap_err(),
            "receiver-not-responsible"
        );
        c.sender_r.jgz = vec!["jgz-ggd-zuid".into()];
        assert_eq!(c.bind("P10", false, None, None), Ok(()));
        c.sender_r.jgz = vec!["jgz-elders".into()];
        assert_eq!(
            c.bind("P10", false, None, None).unwrap_err(),
            "receiver-not-responsible"
        );

        let c = Case::new(
            partner("swv-vo-zuid", Role::SwvVo),
            partner("lyceum-zuid", Role::SchoolVo),
        );
        let p2 = Reference {
            sender: "lyceum-zuid",
            receiver: "swv-vo-zuid",
            flow_id: Some("P2"),
            subject: Some("pupil-a"),
            withdrawn: false,
        };
        assert_eq!(c.bind("P11", true, Some(p2), None), Ok(()));
        for r in [
            Reference {
                flow_id: Some("P1"),
                ..p2
            },
            Reference {
                sender: "swv-vo-zuid",
                receiver: "lyceum-zuid",
                ..p2
            },
        ] {
            assert_eq!(
                c.bind("P11", true, Some(r), None).unwrap_err(),
                "receiver-not-responsible"
            );
        }
        assert_eq!(
            c.bind("P11", false, None, None).unwrap_err(),
            "missing-required-field"
        );
    }

    #[test]
    fn field_membership_and_woongemeente() {
        let school = partner("obs-de-linde", Role::SchoolPo);
        let mut c = Case::new(school.clone(), partner("lyceum-zuid", Role::SchoolVo));
        c.data = json!({"aanmelding": {"school": "lyceum-zuid"}});
        assert_eq!(c.bind("P1", false, None, None), Ok(()));
        c.data = json!({"aanmelding": {"school": "CANARY-elders"}});
        assert_eq!(
            c.bind("P1", false, None, None).unwrap_err(),
            "receiver-not-responsible"
        );
        c.data = json!({});
        assert_eq!(
            c.bind("P1", false, None, None).unwrap_err(),
            "missing-required-field"
        );

        let mut c = Case::new(school.clone(), partner("swv-po-noord", Role::SwvPo));
        assert_eq!(
            c.bind("P2", false, None, None).unwrap_err(),
            "receiver-not-responsible"
        );
        c.sender_r.swv = vec!["swv-po-noord".into()];
        assert_eq!(c.bind("P2", false, None, None), Ok(()));

        for (flow_id, office) in [
            ("P3", partner("leerplicht-gemeente", Role::Leerplicht)),
            ("P4", partner("wijkteam-noord", Role::Wijkteam)),
        ] {
            let mut c = Case::new(school.clone(), office);
            c.receiver_r = serves(&["0599"]);
            c.data = json!({"leerling": {"woongemeente": "0599"}});
            assert_eq!(c.bind(flow_id, false, None, None), Ok(()));
            c.receiver_r = serves(&["0606"]);
            assert_eq!(
                c.bind(flow_id, false, None, None).unwrap_err(),
                "receiver-not-responsible"
            );
            for bad in [json!({}), json!({"leerling": {"woongemeente": "CANARY"}})] {
                c.data = bad;
                assert_eq!(
                    c.bind(flow_id, false, None, None).unwrap_err(),
                    "missing-required-field"
                );
            }
            // A flow that answers no message takes no `in_reply_to`.
            c.data = json!({"leerling": {"woongemeente": "0606"}});
            assert_eq!(
                c.bind(flow_id, true, None, None).unwrap_err(),
                "invalid-envelope"
            );
        }
    }

    #[test]
    fn a_reply_goes_to_the_sender_of_what_it_answers_about_the_same_pupil() {
        let c = Case::new(
            partner("wijkteam-noord", Role::Wijkteam),
            partner("obs-de-linde", Role::SchoolPo),
        );
        let p4 = Reference {
            sender: "obs-de-linde",
            receiver: "wijkteam-noord",
            flow_id: Some("P4"),
            subject: Some("pupil-a"),
            withdrawn: false,
        };
        assert_eq!(c.bind("P5", true, Some(p4), None), Ok(()));
        assert_eq!(
            c.bind("P5", false, None, None).unwrap_err(),
            "missing-required-field"
        );
        assert_eq!(
            c.bind("P5", true, None, None).unwrap_err(),
            "unknown-reference"
        );
        let wrong = [
            Reference {
                sender: "wijkteam-noord",
                receiver: "obs-de-linde",
                ..p4
            },
            Reference {
                sender: "cbs-het-anker",
                ..p4
            },
            Reference {
                flow_id: Some("P1"),
                ..p4
            },
        ];
        for r in wrong {
            assert_eq!(
                c.bind("P5", true, Some(r), None).unwrap_err(),
                "receiver-not-responsible",
                "{r:?}"
            );
        }
        assert_eq!(c.bind("P5", true, Some(p4), Some("pupil-a")), Ok(()));
        assert_eq!(
            c.bind("P5", true, Some(p4), Some("pupil-b")).unwrap_err(),
            "receiver-not-responsible"
        );
    }
}
