//! Seeds a running server with a team's accounts through the real sync protocol, as a device
//! would: `FIELDNOTES_TOKEN=<token> cargo run -p fieldnotes-server --example seed -- ws://127.0.0.1:3030/sync <team id> 500`.
//! The token is a Bearer token of a member of the team (`fieldnotes admin token create`).
//!
//! Each account has a few drivers, ten visit notes, a follow-up and a value proposition, and the
//! team directory lists them all. Used by the 500-account browser benchmark and handy for demos.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use automerge::AutoCommit;
use fieldnotes_model::{
    AccountDoc, AccountId, AccountSummary, DirectoryDoc, DriverKey, Editor, FollowUpId, NewAccount,
    NewNote, NoteId, Strength, TeamId, UserId, UsualDriver, team_directory_key,
};
use fieldnotes_sync::DocumentId;
use fieldnotes_sync::client::{Client, ClientConfig, ConnectionState};
use fieldnotes_sync::protocol::PeerId;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const DAY: i64 = 86_400_000;
const TOWNS: [&str; 8] = [
    "Ashford",
    "Bexley",
    "Crawley",
    "Dartford",
    "Epsom",
    "Farnham",
    "Guildford",
    "Horsham",
];
const TRADES: [&str; 8] = [
    "Plumbing",
    "Bakery",
    "Garage",
    "Electrics",
    "Flooring",
    "Glass",
    "Hardware",
    "Interiors",
];

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS gives random bytes");
    bytes
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, team, count] = args.as_slice() else {
        bail!(
            "usage: FIELDNOTES_TOKEN=<token> seed <ws://host:port/sync> <team id> <number of accounts>"
        );
    };
    let count: usize = count.parse().context("the number of accounts")?;
    let team = TeamId::new(team.as_str());
    let editor = Editor::new(UserId::new("Seed Data"), &random::<16>())?;
    let now = 1_764_000_000_000;

    let started = Instant::now();
    let mut docs: BTreeMap<DocumentId, AutoCommit> = BTreeMap::new();
    let mut directory = DirectoryDoc::genesis(&editor, &team)?;
    for i in 0..count {
        let id = DocumentId::from_bytes(random::<16>());
        let account_id = AccountId::new(id.to_string());
        let name = format!("{} {} #{i}", TOWNS[i % 8], TRADES[(i / 8) % 8]);
        let created = now - (i as i64 % 90) * DAY;
        let mut account = AccountDoc::create(
            editor.clone(),
            NewAccount {
                id: account_id.clone(),
                team: team.clone(),
                name: name.clone(),
                branch: ["North", "South", "East", "West"][i % 4].into(),
                area: TOWNS[(i + 3) % 8].into(),
            },
            created,
        )?;
        // Most accounts have known reasons; every seventh does not.
        if i % 7 != 0 {
            for (k, driver) in [
                UsualDriver::Relationship,
                UsualDriver::Delivery,
                UsualDriver::Price,
            ]
            .into_iter()
            .enumerate()
            .filter(|(k, _)| (i + k) % 2 == 0 || *k == 0)
            {
                account.set_driver(
                    &DriverKey::usual(driver),
                    Strength::new(1 + ((i + k) % 5) as i64)?,
                    "said so at the counter",
                    created + 1,
                )?;
            }
        }
        account.splice_value_proposition(
            0,
            0,
            "Same-day delivery and a rep who answers.",
            created + 2,
        )?;
        for n in 0..10 {
            account.add_note(
                NewNote {
                    id: NoteId::from_random(&random::<16>()),
                    text: format!(
                        "Visit {n}: talked about stock, delivery windows and the trade counter."
                    ),
                    drivers: vec![DriverKey::usual(UsualDriver::Delivery)],
                    objections: if n % 3 == 0 {
                        vec!["price of fittings".into()]
                    } else {
                        vec![]
                    },
                },
                created + DAY * n,
            )?;
        }
        account.add_follow_up(
            &FollowUpId::from_random(&random::<16>()),
            "Send the training dates",
            created + 14 * DAY,
            created + 3,
        )?;
        directory.add_account(
            &account_id,
            &AccountSummary {
                name,
                created_at: created,
                archived: false,
            },
            created,
        )?;
        docs.insert(id, account.into_automerge());
    }
    docs.insert(
        DocumentId::from_bytes(team_directory_key(&team)),
        directory.into_automerge(),
    );
    eprintln!("built {count} accounts in {:?}", started.elapsed());

    let started = Instant::now();
    let token = std::env::var("FIELDNOTES_TOKEN").context(
        "set FIELDNOTES_TOKEN to a Bearer token of a team member (fieldnotes admin token create)",
    )?;
    let mut request = format!("{url}?team={}", team.as_str()).into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("could not connect to {url}"))?;
    let mut client = Client::new(ClientConfig {
        peer_id: PeerId::new(format!("seed-{}", fieldnotes_model::hex(&random::<8>()))),
        storage_id: None,
        is_ephemeral: true,
        ephemeral_session_id: fieldnotes_model::hex(&random::<8>()),
    });
    // A window of documents at a time, as a phone syncs: a client that sends ten thousand
    // documents before reading a reply is closed as a reader that does not read.
    const WINDOW: usize = 200;
    let mut waiting: std::collections::VecDeque<DocumentId> = docs.keys().copied().collect();
    let mut open: Vec<DocumentId> = Vec::new();
    client.handle_connected();
    loop {
        if matches!(client.connection_state(), ConnectionState::Joined { .. }) {
            open.retain(|id| {
                let doc = docs.get_mut(id).expect("an open document is seeded");
                let done = client.pending_change_count(id, doc) == 0;
                if done {
                    client.close_document(id);
                }
                !done
            });
            while open.len() < WINDOW
                && let Some(id) = waiting.pop_front()
            {
                client.open_document(id, None)?;
                client.sync_document(id, docs.get_mut(&id).expect("seeded"));
                open.push(id);
            }
            if open.is_empty() {
                break;
            }
        }
        while let Some(frame) = client.poll_frame() {
            socket.send(WsMessage::Binary(frame.into())).await?;
        }
        let frame = tokio::time::timeout(std::time::Duration::from_secs(60), socket.next())
            .await
            .context("the server stopped answering")?
            .context("the server closed the connection")??;
        if let WsMessage::Binary(bytes) = frame {
            client.handle_frame(&bytes, &mut docs)?;
        }
    }
    eprintln!(
        "pushed {} documents; the server acknowledged them all in {:?}",
        docs.len(),
        started.elapsed()
    );
    socket.close(None).await.ok();
    Ok(())
}
