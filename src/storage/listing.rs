//! The one record-listing query of every backend, built for the filters a request
//! gives, so that the database can answer a page with an index range scan: by
//! partnership or reporting agency through `(partnership_id, key)` and
//! `(reporting_agency, key)`, by kind through the key itself (keys begin with the
//! kind), always in key order from the page's last key.

use crate::{
    domain::{Date, records::RecordKind, submission::RecordFilter},
    storage::PageRequest,
};

/// A value to bind, in placeholder order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bind {
    Text(String),
    /// NULL when `None`.
    OptText(Option<String>),
    Int(i64),
}

/// Binds values in order to a query of either backend.
pub(crate) fn bind_all<'q, DB>(
    mut q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    binds: Vec<Bind>,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for b in binds {
        q = match b {
            Bind::Text(t) => q.bind(t),
            Bind::OptText(t) => q.bind(t),
            Bind::Int(i) => q.bind(i),
        };
    }
    q
}

/// The listing's SQL (`$1`, `$2`, ... placeholders, which both SQLite and
/// PostgreSQL take) and its values.
pub(crate) fn list_records(filter: &RecordFilter, page: &PageRequest) -> (String, Vec<Bind>) {
    let mut binds = vec![Bind::Text(page.after.clone().unwrap_or_default())];
    let mut sql = String::from(
        "SELECT r.key, v.content, r.revision, r.update_time FROM records r \
         JOIN record_revisions v ON v.record_id = r.id AND v.revision = r.revision WHERE r.key > $1",
    );
    let mut push = |sql: &mut String, condition: &str, value: Bind| {
        binds.push(value);
        sql.push_str(&condition.replace('?', &format!("${}", binds.len())));
    };
    if let Some(p) = &filter.partnership {
        push(&mut sql, " AND r.partnership_id = ?", Bind::Text(p.to_string()));
    }
    if let Some(a) = &filter.agency {
        push(&mut sql, " AND r.reporting_agency = ?", Bind::Text(a.to_string()));
    }
    if let Some(k) = filter.kind {
        let (low, high) = k.key_range();
        push(&mut sql, " AND r.key >= ?", Bind::Text(low));
        push(&mut sql, " AND r.key < ?", Bind::Text(high));
    }
    if filter.from.is_some() || filter.to.is_some() {
        let from = i64::from(filter.from.unwrap_or(Date::MIN).to_days());
        let to = i64::from(filter.to.unwrap_or(Date::MAX).to_days());
        let contract = i64::from(RecordKind::ServiceContract.code());
        // Contracts overlap the range; everything else lies inside it.
        push(&mut sql, " AND ((r.kind = ?", Bind::Int(contract));
        push(&mut sql, " AND r.span_start <= ?", Bind::Int(to));
        push(&mut sql, " AND r.span_end >= ?)", Bind::Int(from));
        push(&mut sql, " OR (r.kind <> ?", Bind::Int(contract));
        push(&mut sql, " AND r.span_start >= ?", Bind::Int(from));
        push(&mut sql, " AND r.span_end <= ?))", Bind::Int(to));
    }
    push(&mut sql, " ORDER BY r.key LIMIT ?", Bind::Int(i64::from(page.limit)));
    (sql, binds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Id;

    #[test]
    fn each_filter_adds_its_condition_and_placeholders_count_up() {
        let (sql, binds) = list_records(&RecordFilter::default(), &PageRequest { after: None, limit: 50 });
        assert!(sql.ends_with("WHERE r.key > $1 ORDER BY r.key LIMIT $2"), "{sql}");
        assert_eq!(binds, [Bind::Text(String::new()), Bind::Int(50)]);
        let filter = RecordFilter {
            partnership: Some(Id::parse("pa").unwrap()),
            kind: Some(RecordKind::SurveyResponse),
            ..RecordFilter::default()
        };
        let (sql, binds) = list_records(&filter, &PageRequest { after: Some("k".into()), limit: 10 });
        assert!(
            sql.contains("r.partnership_id = $2 AND r.key >= $3 AND r.key < $4 ORDER BY r.key LIMIT $5"),
            "{sql}"
        );
        assert_eq!(binds[2], Bind::Text("survey_response/".into()));
        assert_eq!(binds[3], Bind::Text("survey_response0".into()));
    }
}
