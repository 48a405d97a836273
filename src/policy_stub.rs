//! Placeholder with the policy stage's API until the real module lands (replaced by src/policy/).
use crate::domain::*;
use std::path::Path;
pub struct PolicySet;
#[derive(Debug)]
pub struct PolicyError;
impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("x")
    }
}
impl std::error::Error for PolicyError {}
impl PolicySet {
    pub fn load_dir(_d: &Path) -> Result<PolicySet, PolicyError> {
        Ok(PolicySet)
    }
    pub fn hash(&self) -> &str {
        ""
    }
}
pub struct DecisionRequest<'a> {
    pub sender: &'a Partner,
    pub receiver: &'a Partner,
    pub message_type: &'a str,
    pub purpose: &'a str,
    pub subject: Option<&'a SubjectId>,
    pub justification: Option<&'a str>,
    pub data: &'a serde_json::Value,
    pub consents: &'a [ConsentRecord],
    pub today: time::Date,
    pub pseudonym_key: &'a [u8],
}
pub struct Decision {
    pub flow_id: String,
    pub policy_hash: String,
    pub legal_basis: String,
    pub retention_days: u32,
    pub agreement_id: Option<String>,
    pub subject: Option<serde_json::Value>,
    pub delivered: serde_json::Value,
    pub consents_used: Vec<String>,
    pub suppressed_cells: Vec<usize>,
}
impl Decision {
    pub fn delivered_paths(&self) -> Vec<String> {
        vec![]
    }
    pub fn withheld(&self) -> Vec<(String, String)> {
        vec![]
    }
    pub fn consent_dependent(&self) -> Vec<(String, String)> {
        vec![]
    }
}
pub struct Refusal {
    pub code: &'static str,
    pub status: u16,
    pub detail: String,
}
pub fn decide(_p: &PolicySet, _r: &DecisionRequest) -> Result<Decision, Refusal> {
    Err(Refusal {
        code: "no-policy",
        status: 403,
        detail: String::new(),
    })
}
pub fn strip_paths(_d: &mut serde_json::Value, _p: &[String]) {}
pub struct Finding;
impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("x")
    }
}
impl Finding {
    pub fn is_error(&self) -> bool {
        false
    }
}
pub fn check(_d: &Path) -> Vec<Finding> {
    vec![]
}
pub fn explain(_p: &PolicySet, _f: Role, _t: Role, _p2: &str) -> Result<String, Refusal> {
    Ok(String::new())
}
