//! Tests of request de-duplication: retries answer the remembered result, limits per client
//! and on the number of clients, and the table's place in the serialized state.

mod common;

use cairn_meta::*;
use common::*;

fn req(client_id: u64, seq: u64) -> Option<RequestId> {
    Some(RequestId { client_id, seq })
}

#[test]
fn a_retry_answers_the_first_result() {
    let mut st = fs();
    let cmd = create_cmd("/f", false, T0);
    let first = st.apply(req(7, 1), &cmd).unwrap();
    let snapshot = st.clone();
    assert_eq!(st.apply(req(7, 1), &cmd).unwrap(), first);
    assert_eq!(st, snapshot, "a remembered request is not applied again");
    // A new seq is a new request.
    assert_eq!(
        st.apply(req(7, 2), &cmd).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    // The same seq from another client is another request too.
    assert_eq!(
        st.apply(req(8, 1), &cmd).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
}

#[test]
fn errors_are_remembered_and_leave_the_namespace_alone() {
    let mut st = fs();
    let del = delete_cmd("/x", false, T0);
    let e = st.apply(req(7, 1), &del).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    st.check_invariants().unwrap();
    assert_eq!(st.list(&p("/"), "", 0).unwrap().0.len(), 0);
    create(&mut st, "/x");
    // The retry must not delete the file created since.
    assert_eq!(st.apply(req(7, 1), &del), Err(e));
    assert_eq!(names(&st, "/"), ["x"]);
}

#[test]
fn client_zero_and_none_are_not_deduplicated() {
    let mut st = fs();
    let cmd = mkdir_cmd("/d", false, T0);
    st.apply(req(0, 1), &cmd).unwrap();
    assert_eq!(
        st.apply(req(0, 1), &cmd).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        st.apply(None, &cmd).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    // Neither touched the table: the state equals one built without request ids.
    let mut plain = fs();
    plain.apply(None, &cmd).unwrap();
    assert_eq!(st, plain);
}

#[test]
fn not_formatted_is_not_remembered() {
    let mut st = MetaState::new();
    let cmd = mkdir_cmd("/d", false, T0);
    assert_eq!(st.apply(req(7, 1), &cmd), Err(MetaError::NotFormatted));
    assert_eq!(st, MetaState::new());
    let format = MetaCommand::Format {
        chunk_size: CHUNK,
        default_goal: 2,
        lease_key: [7; 32],
        now_ns: T0,
    };
    st.apply(req(7, 0), &format).unwrap();
    assert!(
        st.apply(req(7, 1), &cmd).is_ok(),
        "the retry after Format applies"
    );
}

#[test]
fn each_client_keeps_its_last_128_results() {
    let mut st = fs();
    let n = DEDUP_SEQS_PER_CLIENT as u64 + 1;
    for seq in 1..=n {
        st.apply(req(7, seq), &mkdir_cmd(&format!("/d{seq}"), false, T0))
            .unwrap();
    }
    // Seq 1 was forgotten, so its retry is applied again (and fails); seq 2 is remembered.
    let again = st.apply(req(7, 1), &mkdir_cmd("/d1", false, T0));
    assert_eq!(again.unwrap_err().kind(), ErrorKind::AlreadyExists);
    assert!(st.apply(req(7, 3), &mkdir_cmd("/d3", false, T0)).is_ok());
    st.check_invariants().unwrap();
}

#[test]
fn the_least_recent_client_is_evicted() {
    let mut st = fs();
    let clients = DEDUP_MAX_CLIENTS as u64;
    for client in 1..=clients {
        st.apply(
            req(client, 1),
            &mkdir_cmd(&format!("/c{client}"), false, T0),
        )
        .unwrap();
    }
    // Client 1 becomes the most recent; client 2 is now the least recent.
    st.apply(req(1, 2), &mkdir_cmd("/again", false, T0))
        .unwrap();
    st.apply(req(clients + 1, 1), &mkdir_cmd("/new", false, T0))
        .unwrap();
    st.check_invariants().unwrap();
    // Answering from the table records nothing, so these checks evict nobody.
    assert!(
        st.apply(req(1, 1), &mkdir_cmd("/c1", false, T0)).is_ok(),
        "client 1 is remembered"
    );
    assert!(
        st.apply(req(3, 1), &mkdir_cmd("/c3", false, T0)).is_ok(),
        "client 3 is remembered"
    );
    let c2 = st.apply(req(2, 1), &mkdir_cmd("/c2", false, T0));
    assert_eq!(
        c2.unwrap_err().kind(),
        ErrorKind::AlreadyExists,
        "client 2 was forgotten"
    );
}

#[test]
fn the_table_survives_serialization() {
    let mut st = fs();
    let cmd = create_cmd("/f", false, T0);
    let first = st.apply(req(7, 1), &cmd).unwrap();
    let bytes = postcard::to_stdvec(&st).unwrap();
    let mut loaded: MetaState = postcard::from_bytes(&bytes).unwrap();
    loaded.check_invariants().unwrap();
    assert_eq!(loaded, st);
    assert_eq!(loaded.apply(req(7, 1), &cmd).unwrap(), first);
}
