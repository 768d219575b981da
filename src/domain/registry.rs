//! Agencies, partnerships and memberships (methodology 2.1).

use serde::{Deserialize, Serialize};

use super::{Date, Id, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Sector {
    NhsBody,
    LocalAuthority,
    PrivateProvider,
    VoluntaryOrCommunityOrganisation,
    OtherPublicBody,
}

impl Sector {
    pub const ALL: [Sector; 5] = [
        Sector::NhsBody,
        Sector::LocalAuthority,
        Sector::PrivateProvider,
        Sector::VoluntaryOrCommunityOrganisation,
        Sector::OtherPublicBody,
    ];

    /// The stable name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Sector::NhsBody => "NHS_BODY",
            Sector::LocalAuthority => "LOCAL_AUTHORITY",
            Sector::PrivateProvider => "PRIVATE_PROVIDER",
            Sector::VoluntaryOrCommunityOrganisation => "VOLUNTARY_OR_COMMUNITY_ORGANISATION",
            Sector::OtherPublicBody => "OTHER_PUBLIC_BODY",
        }
    }

    pub fn from_name(s: &str) -> Option<Sector> {
        Sector::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Lead,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Lead => "LEAD",
            Role::Member => "MEMBER",
        }
    }

    pub fn from_name(s: &str) -> Option<Role> {
        match s {
            "LEAD" => Some(Role::Lead),
            "MEMBER" => Some(Role::Member),
            _ => None,
        }
    }
}

/// Free text such as display names: non-empty when required, bounded in characters,
/// and free of control characters (a NUL or an escape code is never part of a name;
/// paragraphs may hold tabs and line breaks). The one rule for every text field of
/// every request, so both backends store exactly what passed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text;

/// What a text field may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextLimit {
    pub max_chars: usize,
    /// Tabs and line breaks allowed.
    pub multiline: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("is required")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must not contain control characters (found U+{0:04X} at character {1})")]
    ControlCharacter(u32, usize),
}

/// Names and titles: one line.
pub const NAME: TextLimit = TextLimit { max_chars: 1024, multiline: false };
/// A partnership's purpose: a paragraph.
pub const PURPOSE: TextLimit = TextLimit { max_chars: 4096, multiline: true };

impl Text {
    /// Checks a required text field.
    pub fn required(s: &str, limit: TextLimit) -> Result<String, TextError> {
        if s.trim().is_empty() {
            return Err(TextError::Empty);
        }
        Text::optional(s, limit)
    }

    /// Checks an optional text field.
    pub fn optional(s: &str, limit: TextLimit) -> Result<String, TextError> {
        let mut chars = 0;
        for (i, c) in s.chars().enumerate() {
            if c.is_control() && !(limit.multiline && matches!(c, '\t' | '\n' | '\r')) {
                return Err(TextError::ControlCharacter(u32::from(c), i));
            }
            chars += 1;
        }
        if chars > limit.max_chars {
            return Err(TextError::TooLong(limit.max_chars));
        }
        Ok(s.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAgency {
    pub id: Id,
    pub display_name: String,
    pub sector: Sector,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agency {
    pub id: Id,
    pub display_name: String,
    pub sector: Sector,
    pub create_time: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPartnership {
    pub id: Id,
    pub display_name: String,
    pub purpose: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partnership {
    pub id: Id,
    pub display_name: String,
    pub purpose: String,
    pub create_time: Timestamp,
}

/// The terms of a membership, checked: `end_date`, when present, is not before
/// `start_date`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipTerms {
    pub role: Role,
    pub start_date: Date,
    pub end_date: Option<Date>,
}

impl MembershipTerms {
    /// Fails with the offending field's name when the end is before the start.
    pub fn new(role: Role, start_date: Date, end_date: Option<Date>) -> Result<Self, &'static str> {
        match end_date {
            Some(end) if end < start_date => Err("end_date"),
            _ => Ok(MembershipTerms { role, start_date, end_date }),
        }
    }

    /// Whether the membership covers `day` (start <= day, and no end or end >= day).
    pub fn covers(&self, day: Date) -> bool {
        self.start_date <= day && self.end_date.is_none_or(|end| end >= day)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMembership {
    pub partnership: Id,
    pub agency: Id,
    pub terms: MembershipTerms,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub partnership: Id,
    pub agency: Id,
    pub terms: MembershipTerms,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
}

impl Membership {
    /// Its resource name, `partnerships/{partnership}/memberships/{agency}`.
    pub fn name(&self) -> String {
        format!("partnerships/{}/memberships/{}", self.partnership, self.agency)
    }
}

/// A change to a membership: each `Some` replaces the field; `end_date: Some(None)`
/// clears the end date.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MembershipPatch {
    pub role: Option<Role>,
    pub start_date: Option<Date>,
    pub end_date: Option<Option<Date>>,
}

impl MembershipPatch {
    /// Applies the patch, re-checking the terms; fails with the field to blame.
    pub fn apply(&self, current: MembershipTerms) -> Result<MembershipTerms, &'static str> {
        let role = self.role.unwrap_or(current.role);
        let start = self.start_date.unwrap_or(current.start_date);
        let end = self.end_date.unwrap_or(current.end_date);
        MembershipTerms::new(role, start, end).map_err(|_| {
            // Blame the field the caller changed, so the error points at their input.
            if self.end_date.is_some() { "end_date" } else { "start_date" }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        Date::parse(s).unwrap()
    }

    #[test]
    fn text_refuses_control_characters_and_counts_characters_not_bytes() {
        assert_eq!(Text::required("Trust", NAME).unwrap(), "Trust");
        assert_eq!(Text::required("a\0b", NAME), Err(TextError::ControlCharacter(0, 1)));
        assert!(matches!(Text::required("tab\there", NAME), Err(TextError::ControlCharacter(9, 3))));
        assert!(Text::optional("line\nbreak\ttab\r", PURPOSE).is_ok());
        assert!(Text::optional("nul\0", PURPOSE).is_err());
        assert!(Text::optional("\u{7f}", PURPOSE).is_err(), "DEL is a control character");
        assert!(Text::optional("\u{9b}", PURPOSE).is_err(), "C1 controls too");
        assert!(Text::optional(&"é".repeat(1024), NAME).is_ok(), "1024 characters, 2048 bytes");
        assert_eq!(Text::optional(&"é".repeat(1025), NAME), Err(TextError::TooLong(1024)));
        assert_eq!(Text::required("   ", NAME), Err(TextError::Empty));
    }

    #[test]
    fn terms_reject_end_before_start_but_allow_one_day() {
        assert_eq!(MembershipTerms::new(Role::Lead, d("2026-01-02"), Some(d("2026-01-01"))), Err("end_date"));
        assert!(MembershipTerms::new(Role::Lead, d("2026-01-02"), Some(d("2026-01-02"))).is_ok());
    }

    #[test]
    fn coverage_includes_both_ends() {
        let t = MembershipTerms::new(Role::Member, d("2026-01-01"), Some(d("2026-09-30"))).unwrap();
        assert!(t.covers(d("2026-01-01")) && t.covers(d("2026-09-30")));
        assert!(!t.covers(d("2025-12-31")) && !t.covers(d("2026-10-01")));
        let open = MembershipTerms::new(Role::Member, d("2026-01-01"), None).unwrap();
        assert!(open.covers(d("9999-12-31")));
    }

    #[test]
    fn patch_blames_the_changed_field() {
        let t = MembershipTerms::new(Role::Member, d("2026-01-01"), Some(d("2026-06-30"))).unwrap();
        let later_start = MembershipPatch { start_date: Some(d("2026-07-01")), ..Default::default() };
        assert_eq!(later_start.apply(t), Err("start_date"));
        let early_end = MembershipPatch { end_date: Some(Some(d("2025-01-01"))), ..Default::default() };
        assert_eq!(early_end.apply(t), Err("end_date"));
        let reopen = MembershipPatch { end_date: Some(None), role: Some(Role::Lead), ..Default::default() };
        assert_eq!(
            reopen.apply(t).unwrap(),
            MembershipTerms { role: Role::Lead, start_date: d("2026-01-01"), end_date: None }
        );
    }

    #[test]
    fn text_bounds_count_characters() {
        let ten = TextLimit { max_chars: 10, multiline: false };
        assert_eq!(Text::required("  ", ten), Err(TextError::Empty));
        assert_eq!(Text::required(&"é".repeat(10), ten).unwrap().chars().count(), 10);
        assert_eq!(Text::optional(&"é".repeat(11), ten), Err(TextError::TooLong(10)));
        assert_eq!(Text::optional("", ten).unwrap(), "");
    }
}
