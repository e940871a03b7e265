//! How an instance hears that another instance committed changes: PostgreSQL's
//! LISTEN/NOTIFY.
//!
//! The PostgreSQL store sends `NOTIFY fieldnotes_documents, '<instance> <document id> …'`
//! (as many ids as fit in one payload) inside every transaction that wrote documents' chunks,
//! so the notification is delivered exactly when (and only if) the changes are committed. This thread keeps its own connection
//! `LISTEN`ing and hands each notification from another instance to the hub thread
//! ([`Command::StoredElsewhere`]), which merges the stored chunks into its copy in memory and
//! pushes them to the document's sockets. Each time it (re)connects it asks the hub to merge
//! every document in memory, because notifications sent while it was not listening are lost.

use std::sync::Arc;
use std::time::Duration;

use fieldnotes_sync::DocumentId;
use postgres::fallible_iterator::FallibleIterator;

use crate::fair_queue::FairQueue;
use crate::hub_thread::Command;

/// The notification channel.
pub const CHANNEL: &str = "fieldnotes_documents";

/// Starts the listener thread; it ends when the hub's queue closes.
pub fn spawn(url: String, instance: String, queue: Arc<FairQueue<Command>>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("fieldnotes-listen".into())
        .spawn(move || listen(&url, &instance, &queue))?;
    Ok(())
}

fn listen(url: &str, instance: &str, queue: &FairQueue<Command>) {
    let mut logged_down = false;
    loop {
        if queue.is_closed() {
            return;
        }
        let mut client = match crate::db::PgConnection::connect(url) {
            Ok(connection) => connection.client,
            Err(error) => {
                if !logged_down {
                    tracing::warn!(%error, "cannot listen for other instances' changes; retrying");
                    logged_down = true;
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if let Err(error) = client.batch_execute(&format!("LISTEN {CHANNEL}")) {
            tracing::warn!(%error, "LISTEN failed; retrying");
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        if logged_down {
            tracing::info!("listening for other instances' changes again");
            logged_down = false;
        }
        // Whatever was committed while nobody listened.
        if !queue.push_control(Command::StoredElsewhere(None)) {
            return;
        }
        loop {
            // A fresh iterator each time: one whose timeout has passed is not rearmed until a
            // notification arrives, and then returns at once for ever, spinning a core.
            let next = client
                .notifications()
                .timeout_iter(Duration::from_millis(500))
                .next();
            match next {
                Ok(Some(notification)) => {
                    // `<instance> <document> <document> …` (`storage::notification_payloads`).
                    let mut words = notification.payload().split(' ');
                    if words.next() == Some(instance) {
                        continue;
                    }
                    for document in words.filter_map(|word| DocumentId::parse(word).ok()) {
                        if !queue.push_control(Command::StoredElsewhere(Some(document))) {
                            return;
                        }
                    }
                }
                Ok(None) => {
                    if queue.is_closed() {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "lost the connection listening for other instances");
                    break;
                }
            }
        }
    }
}
