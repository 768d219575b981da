//! AIP-158 pagination: page sizes and opaque page tokens.
//!
//! A token carries the last key of the previous page and a fingerprint of the
//! request's other parameters, so a token used with different parameters is rejected
//! instead of silently paging through another list.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::{
    error::{Error, Result, reason},
    storage::PageRequest,
};

const VERSION: &str = "pm1";

/// Page-size limits of one list method.
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    pub default: u32,
    pub max: u32,
}

pub const REGISTRY_PAGES: PageLimits = PageLimits { default: 50, max: 1000 };

/// A checked page request; `fetch` asks storage for one row more than the page holds
/// to learn whether another page follows.
#[derive(Debug, Clone)]
pub struct Page {
    pub size: u32,
    pub after: Option<String>,
    fingerprint: String,
}

impl Page {
    pub fn parse(page_size: i32, page_token: &str, limits: PageLimits, fingerprint: String) -> Result<Page> {
        let size = match page_size {
            n if n < 0 => {
                return Err(Error::invalid_field(
                    reason::INVALID_REQUEST,
                    "page_size",
                    "must not be negative",
                ));
            }
            0 => limits.default,
            n => (n as u32).min(limits.max),
        };
        let after = if page_token.is_empty() { None } else { Some(decode(page_token, &fingerprint)?) };
        Ok(Page { size, after, fingerprint })
    }

    pub fn fetch(&self) -> PageRequest {
        PageRequest { after: self.after.clone(), limit: self.size + 1 }
    }

    /// Trims the over-fetched row and returns the token of the next page, empty on
    /// the last page.
    pub fn finish<T>(&self, items: &mut Vec<T>, key: impl Fn(&T) -> String) -> String {
        if items.len() > self.size as usize {
            items.truncate(self.size as usize);
            items.last().map(|last| encode(&key(last), &self.fingerprint)).unwrap_or_default()
        } else {
            String::new()
        }
    }
}

fn encode(last_key: &str, fingerprint: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{VERSION}\u{0}{fingerprint}\u{0}{last_key}"))
}

fn decode(token: &str, fingerprint: &str) -> Result<String> {
    let bad = |what: &str| Error::invalid_field(reason::INVALID_PAGE_TOKEN, "page_token", what);
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad("is not a page token of this service"))?;
    let text = String::from_utf8(bytes).map_err(|_| bad("is not a page token of this service"))?;
    let mut parts = text.splitn(3, '\u{0}');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(VERSION), Some(f), Some(key)) if f == fingerprint => Ok(key.to_string()),
        (Some(VERSION), Some(_), Some(_)) => Err(bad("was issued for a request with other parameters")),
        _ => Err(bad("is not a page token of this service")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_cap_and_reject_negative() {
        let p = |n| Page::parse(n, "", REGISTRY_PAGES, String::new());
        assert_eq!(p(0).unwrap().size, 50);
        assert_eq!(p(7).unwrap().size, 7);
        assert_eq!(p(5000).unwrap().size, 1000);
        assert_eq!(p(-1).unwrap_err().violations[0].field, "page_size");
    }

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_request() {
        let page = Page::parse(2, "", REGISTRY_PAGES, "parent=a".into()).unwrap();
        let mut items = vec!["x", "y", "z"];
        let token = page.finish(&mut items, |s| s.to_string());
        assert_eq!(items, ["x", "y"]);
        let next = Page::parse(2, &token, REGISTRY_PAGES, "parent=a".into()).unwrap();
        assert_eq!(next.after.as_deref(), Some("y"));
        let err = Page::parse(2, &token, REGISTRY_PAGES, "parent=b".into()).unwrap_err();
        assert_eq!(err.violations[0].field, "page_token");
        assert!(Page::parse(2, "garbage!", REGISTRY_PAGES, String::new()).is_err());
        let mut last = vec!["x"];
        assert_eq!(page.finish(&mut last, |s| s.to_string()), "");
    }
}
