//! Dutch words for privacy officers and parents: the field categories and sensitivity classes of DOMAIN.md, what
//! each action does, and a log entry's field paths named by their catalogue labels, grouped per category.

use serde::Serialize;

use super::path::{catalogue_path, parse_concrete};
use super::{Class, MessageCatalogue};

/// The field categories of DOMAIN.md with their Dutch names (consent is given per category).
pub const CATEGORIES: [(&str, &str); 17] = [
    ("ADM", "Administratieve gegevens"),
    ("PGN", "Persoonsgebonden nummer (BSN of onderwijsnummer)"),
    ("SCH", "Schoolgegevens"),
    ("LOOP", "Schoolloopbaan"),
    ("TOETS", "Toetsresultaten"),
    ("ADV", "Schooladvies en wensen"),
    ("COG", "Cognitieve capaciteiten (IQ)"),
    ("SEO", "Sociaal-emotionele ontwikkeling en werkhouding"),
    ("BEG", "Begeleiding en ondersteuning"),
    ("DIAG", "Diagnoses"),
    ("THUIS", "Thuissituatie"),
    ("VZ", "Verzuim"),
    ("VZM", "Verzuimmelding"),
    ("ATT", "Bijlagen (psychologische of medische rapporten)"),
    ("JH", "Jeugdhulp"),
    ("STRAF", "Strafrechtelijke gegevens"),
    ("AGG", "Aantallen (geen gegevens over één leerling)"),
];

/// The Dutch name of a category code, `None` for a code DOMAIN.md does not name.
pub fn category_name(code: &str) -> Option<&'static str> {
    CATEGORIES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, name)| *name)
}

/// What the actions `policy explain` and the console name do, in the words they use.
pub const ACTIONS: [(&str, &str); 5] = [
    (
        "toegestaan",
        "wordt verstrekt zoals de verstrekker het stuurt",
    ),
    (
        "alleen met toestemming",
        "wordt alleen verstrekt als de verstrekker zelf een geldige toestemming heeft vastgelegd voor dit doel, \
         deze ontvanger en de categorie van het veld",
    ),
    (
        "gegeneraliseerd",
        "wordt grover verstrekt, bijvoorbeeld alleen het geboortejaar of een klasse van uren",
    ),
    (
        "gepseudonimiseerd",
        "wordt vervangen door een pseudoniem dat per ontvangende organisatie verschilt",
    ),
    (
        "geweigerd",
        "wordt nooit verstrekt; de verstrekker hoort welk veld en waarom",
    ),
];

impl Class {
    /// Every class, from least to most sensitive.
    pub const ALL: [Class; 7] = [
        Class::S0,
        Class::S1,
        Class::S1X,
        Class::S2,
        Class::S3,
        Class::S4,
        Class::Art10,
    ];

    /// What the class means, in Dutch (DOMAIN.md *Field categories and sensitivity classes*).
    pub fn meaning_nl(self) -> &'static str {
        match self {
            Class::S0 => "organisatorisch of geaggregeerd: zegt niets over één leerling",
            Class::S1 => "identificerend: naam, adres, geboortedatum, contactgegevens",
            Class::S1X => "nationaal identificatienummer: BSN of onderwijsnummer",
            Class::S2 => "leerresultaten: toetsen, schoolloopbaan, schooladvies",
            Class::S3 => {
                "gevoelig: welzijn, ondersteuning, verzuim, IQ (grote impact, geen bijzondere persoonsgegevens)"
            }
            Class::S4 => {
                "bijzondere persoonsgegevens (AVG art. 9: gezondheid, diagnoses, ook wat godsdienst of afkomst \
                 onthult) of beroepsgeheim"
            }
            Class::Art10 => "strafrechtelijke gegevens (AVG art. 10)",
        }
    }
}

/// One field of a log entry's list, named as the catalogue names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedField {
    /// The catalogue path (`toetsen[].score`), or the path as logged when the catalogue does not know it.
    pub path: String,
    /// The catalogue's Dutch label; `None` when the field is not in the catalogue.
    pub label: Option<String>,
    /// How often the list names it (a field in a list of the message, such as every test's score, counts once per
    /// element).
    pub count: usize,
    /// The distinct notes given with it in the list (a withheld field's reasons), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl NamedField {
    /// The label, or the path when there is none.
    pub fn name(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.path)
    }
}

/// The fields of one category in a log entry's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategoryGroup {
    /// The category code (`ADM`); `None` for fields the catalogue does not know.
    pub category: Option<String>,
    /// The category's Dutch name.
    pub name: Option<&'static str>,
    pub fields: Vec<NamedField>,
}

impl CategoryGroup {
    /// The code, or `?` for fields outside the catalogue.
    pub fn code(&self) -> &str {
        self.category.as_deref().unwrap_or("?")
    }

    /// The Dutch name, else the code, else "niet in de catalogus".
    pub fn title(&self) -> &str {
        match (self.name, &self.category) {
            (Some(name), _) => name,
            (None, Some(code)) => code,
            (None, None) => "niet in de catalogus",
        }
    }
}

/// Groups the (logged path, note) items of a log entry's field list by category, naming each field by
/// `catalogue`'s label (`None`: the message type is not in the running set). Categories in order of first
/// appearance, fields the catalogue does not know last; a field named more than once (one per list element)
/// appears once with its count.
pub fn group_fields<'a>(
    catalogue: Option<&MessageCatalogue>,
    items: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Vec<CategoryGroup> {
    let mut groups: Vec<CategoryGroup> = Vec::new();
    let mut unknown = CategoryGroup {
        category: None,
        name: None,
        fields: Vec::new(),
    };
    for (logged, note) in items {
        let field = catalogue.and_then(|c| {
            let path = catalogue_path(&parse_concrete(logged)?)?;
            c.field(&path)
        });
        let (group, path, label) = match field {
            Some(f) => {
                let at = match groups
                    .iter()
                    .position(|g| g.category.as_deref() == Some(f.category.as_str()))
                {
                    Some(at) => at,
                    None => {
                        groups.push(CategoryGroup {
                            category: Some(f.category.clone()),
                            name: category_name(&f.category),
                            fields: Vec::new(),
                        });
                        groups.len() - 1
                    }
                };
                (&mut groups[at], f.path.clone(), Some(f.label.clone()))
            }
            None => (&mut unknown, logged.to_owned(), None),
        };
        let named = match group.fields.iter().position(|n| n.path == path) {
            Some(at) => {
                group.fields[at].count += 1;
                &mut group.fields[at]
            }
            None => {
                group.fields.push(NamedField {
                    path,
                    label,
                    count: 1,
                    notes: Vec::new(),
                });
                group.fields.last_mut().expect("just pushed")
            }
        };
        if let Some(note) = note {
            if !named.notes.iter().any(|n| n == note) {
                named.notes.push(note.to_owned());
            }
        }
    }
    if !unknown.fields.is_empty() {
        groups.push(unknown);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySet;
    use std::path::Path;

    fn set() -> PolicySet {
        PolicySet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
    }

    #[test]
    fn every_shipped_field_has_a_label_and_every_category_a_dutch_name() {
        let set = set();
        for cat in set.catalogues() {
            for f in &cat.fields {
                assert!(
                    !f.label.is_empty() && f.label != f.path,
                    "{}: {} has no label of its own",
                    cat.message_type,
                    f.path
                );
                assert!(
                    category_name(&f.category).is_some(),
                    "{}: category {} of {} has no Dutch name",
                    cat.message_type,
                    f.category,
                    f.path
                );
            }
        }
        let rapport = set.catalogue("onderwijskundig-rapport").unwrap();
        assert_eq!(
            rapport.field("leerling.achternaam").unwrap().label,
            "Achternaam leerling"
        );
    }

    #[test]
    fn every_class_has_a_meaning() {
        for c in Class::ALL {
            assert!(c.meaning_nl().len() > 10, "{}", c.as_str());
        }
        assert!(Class::S4.meaning_nl().contains("AVG art. 9"));
    }

    #[test]
    fn logged_paths_group_by_category_with_labels_and_counts() {
        let set = set();
        let cat = set.catalogue("onderwijskundig-rapport");
        let items = [
            ("leerling.achternaam", None),
            ("toetsen[0].score", None),
            ("leerling.voornamen", None),
            ("toetsen[1].score", None),
            ("<invalid-key>", Some("not-in-catalogue: x")),
            ("jeugdhulp.inhoud", Some("deny: a")),
            ("jeugdhulp.inhoud", Some("deny: a")),
        ];
        let groups = group_fields(cat, items);
        let summary: Vec<(String, usize)> = groups
            .iter()
            .map(|g| (g.code().to_owned(), g.fields.len()))
            .collect();
        assert_eq!(
            summary,
            [
                ("ADM".to_owned(), 2),
                ("TOETS".to_owned(), 1),
                ("JH".to_owned(), 1),
                ("?".to_owned(), 1)
            ]
        );
        assert_eq!(groups[0].title(), "Administratieve gegevens");
        assert_eq!(groups[0].fields[0].name(), "Achternaam leerling");
        assert_eq!(groups[1].fields[0].path, "toetsen[].score");
        assert_eq!(groups[1].fields[0].count, 2);
        assert_eq!(groups[2].fields[0].notes, ["deny: a"]);
        assert_eq!(groups[3].title(), "niet in de catalogus");
        assert_eq!(groups[3].fields[0].name(), "<invalid-key>");
        // Without a catalogue every field is unknown, by its logged path.
        let none = group_fields(None, [("leerling.achternaam", None)]);
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].fields[0].path, "leerling.achternaam");
    }
}
