//! The classic protocol, spoken the way the original clients speak it (connect, one `send`
//! with no terminator, one `recv(1024)`), against a real in-process cluster: the lookup
//! through the master, every verb and error, several requests per connection, malformed
//! input, and interplay with the client library (what `cairn put/get/ls` use).

use std::time::Duration;

use bytes::Bytes;
use cairn_testkit::{TestCluster, init_logging, pattern};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on any single wait for an answer.
const WAIT: Duration = Duration::from_secs(30);

async fn connect(addr: &str) -> anyhow::Result<TcpStream> {
    Ok(tokio::time::timeout(WAIT, TcpStream::connect(addr)).await??)
}

/// `sock.send(request); sock.recv(1024)`.
async fn send_recv(s: &mut TcpStream, request: &[u8]) -> anyhow::Result<Vec<u8>> {
    s.write_all(request).await?;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf)).await??;
    buf.truncate(n);
    Ok(buf)
}

/// Sends `request` and reads until exactly `len` bytes of answer arrived.
async fn send_recv_len(s: &mut TcpStream, request: &[u8], len: usize) -> anyhow::Result<Vec<u8>> {
    s.write_all(request).await?;
    let mut buf = vec![0u8; len];
    tokio::time::timeout(WAIT, s.read_exact(&mut buf)).await??;
    Ok(buf)
}

/// One request on its own connection, as the original one-shot clients make them.
async fn once(addr: &str, request: &[u8]) -> anyhow::Result<Vec<u8>> {
    send_recv(&mut connect(addr).await?, request).await
}

/// The chunk server the master names, as `ip:port`.
async fn primary(master: &str) -> anyhow::Result<String> {
    let answer = once(master, b"FIND_PRIMARY_SERVER").await?;
    let text = String::from_utf8(answer)?;
    let info = text
        .strip_prefix("PRIMARY_SERVER_INFO:")
        .ok_or_else(|| anyhow::anyhow!("unexpected answer {text:?}"))?;
    let (ip, port) = info
        .split_once(',')
        .ok_or_else(|| anyhow::anyhow!("no ',' in {text:?}"))?;
    Ok(format!("{ip}:{port}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lookup_through_the_master_then_every_verb() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let master = cluster.master_addr();
    let cs = primary(&master).await?;
    let known: Vec<String> = (0..cluster.chunkserver_count())
        .map(|i| cluster.chunkserver_addr(i))
        .collect();
    assert!(known.contains(&cs), "{cs} is not one of {known:?}");

    assert_eq!(once(&cs, b"CREATE_FILE:notes.txt").await?, b"FILE_CREATED");
    assert_eq!(
        once(&cs, b"CREATE_FILE:notes.txt").await?,
        b"FILE_EXISTS_ERROR"
    );
    let write = b"WRITE_FILE:notes.txt:key:value:more\nsecond line\n\n";
    // Ends with a line end: the last one is the terminator, the answer has one too.
    assert_eq!(once(&cs, write).await?, b"FILE_WRITTEN\n");
    assert_eq!(
        once(&cs, b"READ_FILE:notes.txt").await?,
        b"FILE_CONTENT:key:value:more\nsecond line\n"
    );
    assert_eq!(
        once(&cs, b"WRITE_FILE:notes.txt:a:b\nc").await?,
        b"FILE_WRITTEN"
    );
    assert_eq!(
        once(&cs, b"READ_FILE:notes.txt").await?,
        b"FILE_CONTENT:a:b\nc"
    );
    // WRITE_FILE creates a missing file, and an empty content is fine.
    assert_eq!(once(&cs, b"WRITE_FILE:empty:").await?, b"FILE_WRITTEN");
    assert_eq!(once(&cs, b"READ_FILE:empty").await?, b"FILE_CONTENT:");
    assert_eq!(once(&cs, b"READ_FILE:missing").await?, b"FILE_NOT_FOUND");
    assert_eq!(once(&cs, b"DELETE_FILE:notes.txt").await?, b"FILE_DELETED");
    assert_eq!(
        once(&cs, b"DELETE_FILE:notes.txt").await?,
        b"FILE_NOT_FOUND"
    );
    assert_eq!(once(&cs, b"READ_FILE:notes.txt").await?, b"FILE_NOT_FOUND");

    // Every chunk server answers, not only the one the master named.
    for addr in &known {
        assert_eq!(once(addr, b"READ_FILE:empty").await?, b"FILE_CONTENT:");
    }
    // The master only answers the lookup.
    for bad in [
        &b"READ_FILE:empty"[..],
        b"REGISTER_CHUNK_SERVER:127.0.0.1,7000",
        b"HELLO",
    ] {
        let answer = once(&master, bad).await?;
        assert!(answer.starts_with(b"ERROR:"), "{}", text(&answer));
    }
    let mut m = connect(&master).await?;
    assert!(
        send_recv(&mut m, b"FIND_PRIMARY_SERVER\n")
            .await?
            .ends_with(b"\n")
    );
    assert!(
        send_recv(&mut m, b"FIND_PRIMARY_SERVER")
            .await?
            .starts_with(b"PRIMARY")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_requests_per_connection() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let cs = primary(&cluster.master_addr()).await?;
    let mut s = connect(&cs).await?;
    // Unterminated, one after the other on one connection.
    assert_eq!(send_recv(&mut s, b"CREATE_FILE:a").await?, b"FILE_CREATED");
    assert_eq!(
        send_recv(&mut s, b"WRITE_FILE:a:1:2").await?,
        b"FILE_WRITTEN"
    );
    assert_eq!(
        send_recv(&mut s, b"READ_FILE:a").await?,
        b"FILE_CONTENT:1:2"
    );
    // Newline-terminated, answered in kind.
    assert_eq!(
        send_recv(&mut s, b"READ_FILE:a\n").await?,
        b"FILE_CONTENT:1:2\n"
    );
    assert_eq!(
        send_recv(&mut s, b"READ_FILE:a\r\n").await?,
        b"FILE_CONTENT:1:2\n"
    );
    // Lines sent together get their answers in order.
    let want = b"FILE_CREATED\nFILE_CONTENT:\nFILE_DELETED\nFILE_NOT_FOUND\n";
    let got = send_recv_len(
        &mut s,
        b"CREATE_FILE:b\nREAD_FILE:b\nDELETE_FILE:b\nREAD_FILE:b\n",
        want.len(),
    )
    .await?;
    assert_eq!(text(&got), text(want));
    // Lines then an unterminated request in one burst.
    let want = b"FILE_CONTENT:1:2\nFILE_DELETED";
    let got = send_recv_len(&mut s, b"READ_FILE:a\nDELETE_FILE:a", want.len()).await?;
    assert_eq!(text(&got), text(want));
    assert_eq!(send_recv(&mut s, b"READ_FILE:a").await?, b"FILE_NOT_FOUND");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_input_is_answered_and_the_connection_stays_usable() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder()
        .chunkserver_config(|c| c.classic.max_request_bytes = 4096)
        .start()
        .await?;
    let cs = primary(&cluster.master_addr()).await?;
    let mut s = connect(&cs).await?;
    assert_eq!(
        send_recv(&mut s, b"WRITE_FILE:probe:ok").await?,
        b"FILE_WRITTEN"
    );
    let long_name = format!("CREATE_FILE:{}", "n".repeat(256));
    let mut over = b"WRITE_FILE:big:".to_vec();
    over.extend(std::iter::repeat_n(b'z', 5000));
    let mut over_line = b"READ_FILE:".to_vec();
    over_line.extend(std::iter::repeat_n(b'q', 5000));
    over_line.push(b'\n');
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unknown verb", b"LIST_FILES:x".to_vec()),
        ("lowercase verb", b"read_file:probe".to_vec()),
        ("dot-dot", b"READ_FILE:..".to_vec()),
        ("slash", b"CREATE_FILE:a/b".to_vec()),
        ("escape", b"DELETE_FILE:../probe".to_vec()),
        ("NUL", b"CREATE_FILE:a\0b".to_vec()),
        ("too long name", long_name.into_bytes()),
        ("non-UTF-8 name", b"CREATE_FILE:\xff\xfe".to_vec()),
        ("non-UTF-8 verb", b"\xc3\x28:x".to_vec()),
        ("no name", b"READ_FILE".to_vec()),
        ("no content", b"WRITE_FILE:probe".to_vec()),
        ("over the limit", over),
        ("over the limit, a line", over_line),
    ];
    for (what, request) in cases {
        let answer = send_recv(&mut s, &request).await?;
        assert!(
            answer.starts_with(b"ERROR:"),
            "{what}: answered {}",
            text(&answer)
        );
        assert_eq!(
            send_recv(&mut s, b"READ_FILE:probe").await?,
            b"FILE_CONTENT:ok",
            "after {what}"
        );
    }
    // Nothing was created by the refused requests.
    let client = cluster.client().await?;
    let names: Vec<String> = client
        .list("/")
        .await?
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["probe"]);
    // Just under the limit is fine.
    let mut fits = b"WRITE_FILE:big:".to_vec();
    fits.extend(std::iter::repeat_n(b'z', 4096 - fits.len()));
    assert_eq!(send_recv(&mut s, &fits).await?, b"FILE_WRITTEN");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interplay_with_the_client_library_in_a_classic_directory() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder()
        .master_config(|c| c.classic_dir = "/classic/files".try_into().expect("valid"))
        .chunkserver_config(|c| c.classic_dir = "/classic/files".try_into().expect("valid"))
        .start()
        .await?;
    let client = cluster.client().await?;
    // The master created the classic directory at start.
    assert!(client.stat("/classic/files").await?.is_dir());
    let cs = primary(&cluster.master_addr()).await?;

    // Classic in, library out (what `cairn ls` and `cairn get` see).
    assert_eq!(
        once(&cs, b"WRITE_FILE:shared.txt:hello: classic\n!").await?,
        b"FILE_WRITTEN"
    );
    let entries = client.list("/classic/files").await?;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].name, "shared.txt");
    assert_eq!(entries[0].attr.size, 16);
    assert_eq!(
        &client.read_all("/classic/files/shared.txt").await?[..],
        b"hello: classic\n!"
    );

    // Library in, classic out.
    client
        .write_all(
            "/classic/files/lib.txt",
            Bytes::from_static(b"from the library\n"),
            false,
        )
        .await?;
    assert_eq!(
        once(&cs, b"READ_FILE:lib.txt").await?,
        b"FILE_CONTENT:from the library\n"
    );

    // A multi-chunk file (test chunks are 1 MiB) sent in one burst: replicated like any other.
    let data = pattern(9, (3 << 19) + 7);
    let mut request = b"WRITE_FILE:big.bin:".to_vec();
    request.extend_from_slice(&data);
    assert_eq!(once(&cs, &request).await?, b"FILE_WRITTEN");
    let back = client.read_all("/classic/files/big.bin").await?;
    assert!(back[..] == data[..], "content differs");
    let (_, chunks) = client.chunks("/classic/files/big.bin").await?;
    assert_eq!(chunks.len(), 2);
    for c in &chunks {
        assert_eq!(c.replicas.len(), 3, "chunk {} on {:?}", c.index, c.replicas);
    }
    let mut s = connect(&cs).await?;
    let answer = send_recv_len(&mut s, b"READ_FILE:big.bin", 13 + data.len()).await?;
    assert_eq!(&answer[..13], b"FILE_CONTENT:");
    assert!(answer[13..] == data[..], "classic read differs");

    // A directory is not a classic file.
    client.mkdir("/classic/files/sub", false).await?;
    assert_eq!(
        once(&cs, b"DELETE_FILE:sub").await?,
        b"IS_A_DIRECTORY_ERROR"
    );
    assert_eq!(once(&cs, b"READ_FILE:sub").await?, b"IS_A_DIRECTORY_ERROR");
    // Deleted classically, gone for the library.
    assert_eq!(once(&cs, b"DELETE_FILE:shared.txt").await?, b"FILE_DELETED");
    let err = client
        .stat("/classic/files/shared.txt")
        .await
        .expect_err("deleted");
    assert_eq!(err.kind(), cairn_client::Kind::NotFound);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timeout_error_when_the_master_is_gone() -> anyhow::Result<()> {
    init_logging();
    let mut cluster = TestCluster::builder()
        .chunkserver_config(|c| c.classic.timeout = Duration::from_secs(2))
        .start()
        .await?;
    let cs = primary(&cluster.master_addr()).await?;
    assert_eq!(once(&cs, b"WRITE_FILE:f:x").await?, b"FILE_WRITTEN");
    cluster.kill_master().await;
    let started = std::time::Instant::now();
    assert_eq!(once(&cs, b"READ_FILE:f").await?, b"TIMEOUT_ERROR");
    assert!(started.elapsed() < Duration::from_secs(15));
    // The connection's server is still there for the next request.
    cluster.restart_master().await?;
    cluster.wait_for_servers(3, Duration::from_secs(20)).await?;
    let mut s = connect(&cs).await?;
    let mut answer = Vec::new();
    // Until the restarted master is ready the answer may still be an error; then content.
    for _ in 0..20 {
        answer = send_recv(&mut s, b"READ_FILE:f").await?;
        if answer == b"FILE_CONTENT:x" {
            break;
        }
    }
    assert_eq!(text(&answer), "FILE_CONTENT:x");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_held_by_a_cairn_client_answers_file_locked_error() -> anyhow::Result<()> {
    init_logging();
    let cluster = TestCluster::builder().start().await?;
    let client = cluster.client().await?;
    let cs = primary(&cluster.master_addr()).await?;
    assert_eq!(
        text(&once(&cs, b"WRITE_FILE:held:v1").await?),
        "FILE_WRITTEN"
    );
    // An advisory exclusive lock (`cairn lock`) and an exclusive-writer open both hold the
    // file against classic writers and deleters; readers still get through.
    client
        .lock("/held", &cairn_client::LockOptions::exclusive(), |_| {})
        .await?;
    assert_eq!(
        text(&once(&cs, b"WRITE_FILE:held:v2").await?),
        "FILE_LOCKED_ERROR"
    );
    assert_eq!(
        text(&once(&cs, b"DELETE_FILE:held").await?),
        "FILE_LOCKED_ERROR"
    );
    assert_eq!(
        text(&once(&cs, b"READ_FILE:held").await?),
        "FILE_CONTENT:v1"
    );
    client
        .unlock("/held", &cairn_client::LockOptions::exclusive())
        .await?;
    let f = client.open_exclusive("/held", None, |_| {}).await?;
    assert_eq!(
        text(&once(&cs, b"WRITE_FILE:held:v3").await?),
        "FILE_LOCKED_ERROR"
    );
    f.close().await?;
    assert_eq!(
        text(&once(&cs, b"WRITE_FILE:held:v4").await?),
        "FILE_WRITTEN"
    );
    assert_eq!(&client.read_all("/held").await?[..], b"v4");
    assert_eq!(text(&once(&cs, b"DELETE_FILE:held").await?), "FILE_DELETED");
    Ok(())
}
