//! What keeps the PostgreSQL schema safe where it relies on the service's checks
//! instead of its own constraints (migration 0005 dropped the record tables' foreign
//! keys, which cost ~40% of the database's CPU in a batch): registry and record rows
//! are never removed or re-keyed, every revision belongs to a record, and a database
//! written before the change migrates forward with its rows intact. That a record
//! naming an unknown agency or partnership is refused before it is written is
//! `submission::every_check_rejects_with_its_code_and_path_and_stores_nothing`, on
//! both backends.

use partnership_metrics::pb::{self, record::Kind};
use sqlx::PgPool;

use crate::{
    fixtures::{all_nine, rec, registry, submit_request, survey},
    helpers::{Backend, TestApp, TestDatabase, spawn_app_on},
};

async fn pool(app: &TestApp) -> PgPool {
    PgPool::connect(&app.db.url).await.expect("connect to the test database")
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(pool).await.expect(sql)
}

/// SQLSTATE of the error a statement ends with.
async fn refused(pool: &PgPool, sql: &str) -> String {
    let err = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(pool)
        .await
        .expect_err(&format!("{sql} should be refused"));
    err.as_database_error().and_then(|e| e.code()).map(|c| c.to_string()).unwrap_or_default()
}

#[tokio::test]
#[cfg_attr(not(pm_test_postgres), ignore = "PM_TEST_POSTGRES_URL is not set")]
async fn registry_and_record_rows_are_never_removed_or_rekeyed() {
    crate::helpers::require_postgres();
    let app = spawn_app_on(Backend::Postgres, std::time::Duration::from_secs(5)).await;
    registry(&app).await;
    app.submission().submit_records(submit_request("", all_nine())).await.unwrap();
    let db = pool(&app).await;
    let before = app.snapshot().await;
    for sql in [
        "DELETE FROM agencies WHERE id = 'priv-d'",
        "TRUNCATE agencies CASCADE",
        "UPDATE agencies SET id = 'nhs-z' WHERE id = 'nhs-a'",
        "DELETE FROM partnerships WHERE id = 'pa'",
        "TRUNCATE partnerships CASCADE",
        "UPDATE partnerships SET id = 'pz' WHERE id = 'pa'",
        "DELETE FROM records",
        "TRUNCATE records CASCADE",
        "UPDATE records SET id = id + 1000",
    ] {
        // 23001: restrict_violation, raised by the triggers of migration 0005.
        assert_eq!(refused(&db, sql).await, "23001", "{sql}");
    }
    // What the service itself updates still works: a partnership's data version.
    sqlx::query("UPDATE partnerships SET data_version = data_version + 1 WHERE id = 'pa'")
        .execute(&db)
        .await
        .unwrap();
    let after = app.snapshot().await;
    assert_eq!(after.get("records"), before.get("records"));
    assert_eq!(after.get("agencies"), before.get("agencies"));
    db.close().await;
}

#[tokio::test]
#[cfg_attr(not(pm_test_postgres), ignore = "PM_TEST_POSTGRES_URL is not set")]
async fn every_revision_belongs_to_a_record_and_every_record_has_its_current_revision() {
    crate::helpers::require_postgres();
    let app = spawn_app_on(Backend::Postgres, std::time::Duration::from_secs(5)).await;
    registry(&app).await;
    let mut client = app.submission();
    // New records, a key written twice in one batch, then corrections of some.
    let response = |morale: i32, id: &str| {
        let mut s = survey();
        s.response_id = id.into();
        s.morale = Some(morale);
        rec(Kind::SurveyResponse(s))
    };
    client.submit_records(submit_request("", all_nine())).await.unwrap();
    client
        .submit_records(submit_request("", vec![response(1, "r-1"), response(2, "r-2"), response(3, "r-1")]))
        .await
        .unwrap();
    client.submit_records(submit_request("", vec![response(4, "r-2"), response(5, "r-3")])).await.unwrap();
    let db = pool(&app).await;
    assert_eq!(count(&db, "SELECT count(*) FROM records").await, 12);
    assert_eq!(count(&db, "SELECT count(*) FROM record_revisions").await, 14);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM record_revisions v WHERE NOT EXISTS (SELECT 1 FROM records r WHERE r.id = v.record_id)"
        )
        .await,
        0
    );
    // Each record's revisions are 1..=revision, without a gap.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM records r WHERE r.revision <> \
               (SELECT count(*) FROM record_revisions v WHERE v.record_id = r.id AND v.revision BETWEEN 1 AND r.revision)"
        )
        .await,
        0
    );
    assert_eq!(count(&db, "SELECT revision FROM records WHERE key LIKE 'survey_response/%/r-1'").await, 2);
    // The history reads back through the API, in order.
    let key: String = sqlx::query_scalar("SELECT key FROM records WHERE key LIKE 'survey_response/%/r-2'")
        .fetch_one(&db)
        .await
        .unwrap();
    let history = client
        .list_record_revisions(pb::ListRecordRevisionsRequest { key, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.revisions.iter().map(|r| r.revision).collect::<Vec<_>>(), vec![1, 2]);
    db.close().await;
}

/// A database written by the schema before migration 0005 (foreign keys in place)
/// migrates forward with every row kept, the constraints gone and the triggers in.
#[tokio::test]
#[cfg_attr(not(pm_test_postgres), ignore = "PM_TEST_POSTGRES_URL is not set")]
async fn a_database_from_before_0005_migrates_forward_with_its_rows() {
    crate::helpers::require_postgres();
    let db = TestDatabase::new(Backend::Postgres).await;
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let migrator = sqlx::migrate::Migrator::new(migrations).await.unwrap();
    let conn = PgPool::connect(&db.url).await.unwrap();
    migrator.run_to(4, &conn).await.unwrap();
    for sql in [
        "INSERT INTO agencies (id, display_name, sector, create_time) VALUES ('nhs-a', 'NHS A', 'NHS', 0)",
        "INSERT INTO partnerships (id, display_name, purpose, create_time) VALUES ('pa', 'P A', '', 0)",
        "INSERT INTO records (key, kind, partnership_id, reporting_agency, span_start, span_end, revision, update_time) \
           VALUES ('budget_contribution/pa/nhs-a/2026Q3', 9, 'pa', 'nhs-a', 20635, 20726, 2, 0)",
        "INSERT INTO record_revisions (record_id, revision, request_id, commit_time, content) \
           SELECT id, 1, NULL, 0, '\\x01'::bytea FROM records UNION ALL SELECT id, 2, 'r', 1, '\\x02'::bytea FROM records",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&conn).await.unwrap();
    }
    let fks = "SELECT count(*) FROM pg_constraint WHERE contype = 'f' \
               AND conrelid IN ('records'::regclass, 'record_revisions'::regclass)";
    assert_eq!(count(&conn, fks).await, 3);
    migrator.run(&conn).await.unwrap();
    assert_eq!(count(&conn, fks).await, 0);
    assert_eq!(count(&conn, "SELECT count(*) FROM records").await, 1);
    assert_eq!(
        count(&conn, "SELECT count(*) FROM record_revisions v JOIN records r ON r.id = v.record_id").await,
        2
    );
    assert_eq!(refused(&conn, "DELETE FROM agencies").await, "23001");
    // Memberships keep theirs: they are written by registry calls, one at a time.
    assert_eq!(
        refused(
            &conn,
            "INSERT INTO memberships (partnership_id, agency_id, role, start_date, end_date, create_time, update_time) \
             VALUES ('pa', 'ghost', 'MEMBER', '2026-01-01', NULL, 0, 0)"
        )
        .await,
        "23503"
    );
    conn.close().await;
}
