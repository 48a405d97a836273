//! Who may consent, by who discloses and the pupil's age (DOMAIN.md "Legal bases", the consent bullets).
//!
//! The law is chosen by the discloser, a fact of `partners.toml`, not by the flow: a school or an SWV discloses
//! under UAVG art. 5; an organisation that provides jeugdhulp (`jeugdhulp = true`, the wijkteam) under Jeugdwet
//! art. 7.3.11. A flow may only make the rule stricter for 12 to 15 (`consent_12_15 = "ouder-en-jongere"`, a policy
//! choice). Fails closed: a consent whose counting depends on an age nobody knows does not count.

use crate::domain::GivenBy;

/// The law that says who may consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgeRule {
    /// UAVG art. 5: under 16 the legal representative (`ouder` with gezag, `voogd`); from 16 the pupil.
    Uavg5,
    /// Jeugdwet art. 7.3.11: under 12 the parents with gezag or the voogd; from 12 the young person.
    Jeugdwet7311,
}

impl AgeRule {
    /// The rule of a discloser: the Jeugdwet when it provides jeugdhulp, else the UAVG (schools, SWVs, and any
    /// other organisation that is not a youth-care provider).
    pub fn for_discloser(provides_jeugdhulp: bool) -> AgeRule {
        if provides_jeugdhulp {
            AgeRule::Jeugdwet7311
        } else {
            AgeRule::Uavg5
        }
    }

    /// The citation refusals and `policy explain` name.
    pub fn citation(self) -> &'static str {
        match self {
            AgeRule::Uavg5 => "UAVG art. 5",
            AgeRule::Jeugdwet7311 => "Jeugdwet art. 7.3.11",
        }
    }

    /// The age from which the young person decides alone.
    fn own_say_from(self) -> i32 {
        match self {
            AgeRule::Uavg5 => 16,
            AgeRule::Jeugdwet7311 => 12,
        }
    }
}

/// Whom a field is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum About {
    /// The pupil (every field not about the parents).
    Pupil,
    /// The parents themselves (`ouders[].*`): their consent is needed at every age.
    Parents,
}

/// Whether one consent counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fit {
    Counts,
    /// Given by someone who may not consent for this pupil at this age (or, for data about the parents, not by
    /// the parents).
    WrongGiver,
    /// It would count at some ages and not at others, and no birth date is known.
    AgeUnknown,
}

/// The fixed age from which a `vertegenwoordiger` (curatele, mentorschap) can exist.
pub const ADULT: i32 = 18;

/// Whether a consent given by `given_by` counts for data `about` a pupil of `age` (whole years on the day of
/// disclosure; `None` when no birth date is known) under `rule`. `strict_12_15`: the flow asks
/// `ouder-en-jongere` from 12 to 15 (a policy choice, stricter than the law).
pub fn consent_fits(
    rule: AgeRule,
    strict_12_15: bool,
    given_by: GivenBy,
    about: About,
    age: Option<i32>,
) -> Fit {
    use GivenBy::*;
    let yes = |b: bool| if b { Fit::Counts } else { Fit::WrongGiver };
    if about == About::Parents {
        return yes(matches!(given_by, Ouder | Voogd | OuderEnJongere));
    }
    // Parents and young person together count at every age, under either law.
    if given_by == OuderEnJongere {
        return Fit::Counts;
    }
    let Some(age) = age else {
        return Fit::AgeUnknown;
    };
    if strict_12_15 && (12..16).contains(&age) {
        return Fit::WrongGiver;
    }
    let own_say = age >= rule.own_say_from();
    yes(match given_by {
        Ouder | Voogd => !own_say,
        Jongere => own_say,
        Vertegenwoordiger => age >= ADULT,
        OuderEnJongere => true,
    })
}
