//! Measures what another member feels while the server is busy: every 200 ms it changes one
//! account and times the server's acknowledgement (a sync reply whose heads cover the change),
//! for as many seconds as asked (or until SIGINT), then prints one line of JSON with the edits
//! and the p50, p99 and longest acknowledgement in milliseconds.
//!
//! `FIELDNOTES_TOKEN=<token> cargo run -p fieldnotes-server --example probe -- ws://127.0.0.1:3030/sync <team id> <seconds>`
//!
//! Used by `tests/node/browser/bench-team-size.mjs` beside a new phone's download.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use automerge::AutoCommit;
use automerge::transaction::Transactable;
use fieldnotes_sync::DocumentId;
use fieldnotes_sync::client::{Client, ClientConfig};
use fieldnotes_sync::protocol::PeerId;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS gives random bytes");
    bytes
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, team, seconds] = args.as_slice() else {
        bail!("usage: FIELDNOTES_TOKEN=<token> probe <ws://host:port/sync> <team id> <seconds>");
    };
    let seconds: u64 = seconds.parse().context("the number of seconds")?;
    let token = std::env::var("FIELDNOTES_TOKEN").context("set FIELDNOTES_TOKEN")?;
    let mut request = format!("{url}?team={team}").into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("could not connect to {url}"))?;
    let mut client = Client::new(ClientConfig {
        peer_id: PeerId::new(format!("probe-{}", fieldnotes_model::hex(&random::<8>()))),
        storage_id: None,
        is_ephemeral: true,
        ephemeral_session_id: fieldnotes_model::hex(&random::<8>()),
    });
    let document = DocumentId::from_bytes(random::<16>());
    let mut docs: BTreeMap<DocumentId, AutoCommit> = BTreeMap::new();
    docs.insert(document, AutoCommit::new());
    client.open_document(document, None)?;
    client.handle_connected();

    let mut latencies: Vec<Duration> = Vec::new();
    let mut sent_at: Option<Instant> = None;
    let mut next_edit = Instant::now();
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut edits = 0u64;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut stop = false;
    while !stop && (Instant::now() < end || sent_at.is_some()) {
        if sent_at.is_none() && Instant::now() >= next_edit && Instant::now() < end {
            let doc = docs.get_mut(&document).expect("the probe's document");
            doc.put(automerge::ROOT, "visits", edits as i64)?;
            doc.commit();
            edits += 1;
            client.sync_document(document, doc);
            sent_at = Some(Instant::now());
            next_edit = Instant::now() + Duration::from_millis(200);
        }
        while let Some(frame) = client.poll_frame() {
            socket.send(WsMessage::Binary(frame.into())).await?;
        }
        let wait = next_edit
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(5));
        let frame = tokio::select! {
            _ = &mut interrupted => {
                stop = true;
                continue;
            }
            frame = tokio::time::timeout(wait, socket.next()) => frame,
        };
        let frame = match frame {
            Err(_) => continue,
            Ok(None) => bail!("the server closed the connection"),
            Ok(Some(frame)) => frame?,
        };
        if let WsMessage::Binary(bytes) = frame {
            client.handle_frame(&bytes, &mut docs)?;
            if let Some(at) = sent_at
                && client.all_synced(&mut docs)
            {
                latencies.push(at.elapsed());
                sent_at = None;
            }
        }
    }
    latencies.sort();
    let millis = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .map(millis)
            .unwrap_or(0.0)
    };
    println!(
        "{{\"edits\": {}, \"acknowledged\": {}, \"p50_ms\": {:.1}, \"p99_ms\": {:.1}, \"max_ms\": {:.1}}}",
        edits,
        latencies.len(),
        at(0.5),
        at(0.99),
        latencies.last().copied().map(millis).unwrap_or(0.0)
    );
    socket.close(None).await.ok();
    Ok(())
}
