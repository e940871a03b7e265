//! A thin IndexedDB wrapper: exactly the operations the app needs, each with visible semantics.
//!
//! Three object stores (database version 2):
//! - `chunks`, keyed `[document id, sequence]`: Automerge bytes. A document is the concatenation
//!   of its chunks in sequence order (one snapshot, then incremental change sets), which
//!   `Automerge::load` reads as one. Read one document at a time ([`Idb::document`]).
//! - `index`, keyed by document id: each account's entry (`fieldnotes_model::AccountEntry`, or a
//!   note that its document could not be read), written in the same transaction as the
//!   document's chunks. The app reads the whole index when it opens ([`Idb::all_entries`]), so
//!   listing a team of 10,000 accounts never loads their documents. Version 1 had no index:
//!   the repo builds it once from the documents when it first opens such a database.
//! - `meta`, keyed by string: small records (this device's storage id, each document's sync
//!   state under `sync/…`, the drafts of unsaved forms under `draft/…`).
//!
//! Every write goes through [`Idb::write`]: one `readwrite` transaction with `durability:
//! "strict"`, resolved only on the transaction's `complete` event, i.e. once the browser has
//! flushed it to disk. That completion is what the app calls "saved".

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Array, Promise, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    IdbDatabase, IdbKeyRange, IdbObjectStoreParameters, IdbOpenDbRequest, IdbRequest,
    IdbTransaction,
};

const DATABASE_VERSION: u32 = 2;
const CHUNKS: &str = "chunks";
const INDEX: &str = "index";
const META: &str = "meta";

/// What went wrong with on-device storage, in words a rep can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StorageError {
    #[error(
        "this phone's storage is full, so the last change is not saved yet. Free some space \
         (photos, other apps), then tap Retry; keep this tab open until then"
    )]
    Full,
    #[error(
        "this browser does not allow Fieldnotes to store data (private browsing, or storage \
         turned off). Open Fieldnotes in a normal browser window to keep your notes"
    )]
    Unavailable,
    #[error(
        "the phone's storage refused to save. Your change is kept in this tab: tap Retry, and \
         keep this tab open until it says saved (details: {0})"
    )]
    Failed(String),
}

impl StorageError {
    fn from_js(value: JsValue) -> Self {
        let name = js_sys::Reflect::get(&value, &"name".into())
            .ok()
            .and_then(|n| n.as_string())
            .unwrap_or_default();
        let message = js_sys::Reflect::get(&value, &"message".into())
            .ok()
            .and_then(|m| m.as_string())
            .unwrap_or_else(|| format!("{value:?}"));
        // Chromium reports a full disk during a write as an `UnknownError` naming
        // `FILE_ERROR_NO_SPACE`, not as a quota error; to the rep both are a full phone.
        if name == "QuotaExceededError" || message.contains("NO_SPACE") {
            return StorageError::Full;
        }
        match name.as_str() {
            "SecurityError" | "InvalidStateError" if message.contains("not allowed") => {
                StorageError::Unavailable
            }
            _ => StorageError::Failed(if name.is_empty() {
                message
            } else {
                format!("{name}: {message}")
            }),
        }
    }
}

/// A stored document: its id and its chunks `(sequence, bytes)` in sequence order.
pub type StoredDocument = (String, Vec<(u32, Vec<u8>)>);

/// A document's chunks `(sequence, bytes)` in sequence order.
pub type Chunks = Vec<(u32, Vec<u8>)>;

/// A stored document's chunks as one byte string, which `Automerge::load` reads whole.
pub fn document_bytes(chunks: Vec<(u32, Vec<u8>)>) -> Vec<u8> {
    chunks.into_iter().flat_map(|(_, bytes)| bytes).collect()
}

/// One write inside a transaction.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Stores a chunk of a document's Automerge bytes.
    PutChunk {
        document: String,
        sequence: u32,
        bytes: Vec<u8>,
    },
    /// Deletes a document's chunks with a sequence below `below` (after a compacted snapshot).
    DeleteChunksBelow { document: String, below: u32 },
    /// Stores a document's index entry.
    PutEntry { document: String, bytes: Vec<u8> },
    /// Stores a small record.
    PutMeta { key: String, bytes: Vec<u8> },
    /// Deletes a small record.
    DeleteMeta { key: String },
}

#[derive(Clone)]
pub struct Idb {
    name: Rc<str>,
    /// The open connection. The browser closes it after a disk error; it is then reopened.
    database: Rc<RefCell<IdbDatabase>>,
    /// Closed on purpose (sign-out, team switch): never reopened, so a late write cannot
    /// recreate a database that is being deleted.
    closed: Rc<Cell<bool>>,
}

impl Idb {
    /// Opens (and on first use creates) the app's database.
    pub async fn open(name: &str) -> Result<Idb, StorageError> {
        let database = Self::connect(name).await?;
        Ok(Idb {
            name: name.into(),
            database: Rc::new(RefCell::new(database)),
            closed: Rc::new(Cell::new(false)),
        })
    }

    /// Closes the connection for good; writes after this fail. Transactions already started
    /// still complete.
    pub fn close(&self) {
        self.closed.set(true);
        self.database.borrow().close();
    }

    async fn connect(name: &str) -> Result<IdbDatabase, StorageError> {
        let window = web_sys::window().ok_or(StorageError::Unavailable)?;
        let factory = window
            .indexed_db()
            .map_err(StorageError::from_js)?
            .ok_or(StorageError::Unavailable)?;
        let request: IdbOpenDbRequest = factory
            .open_with_u32(name, DATABASE_VERSION)
            .map_err(StorageError::from_js)?;
        let upgrade = Closure::<dyn FnMut(web_sys::Event)>::new({
            let request = request.clone();
            move |_event: web_sys::Event| {
                let Ok(result) = request.result() else { return };
                let database: IdbDatabase = result.unchecked_into();
                let names = database.object_store_names();
                // Each store is created when missing, so one upgrade path serves a new database
                // and every older version.
                if !names.contains(CHUNKS) {
                    let _ = database.create_object_store(CHUNKS);
                }
                if !names.contains(INDEX) {
                    let _ = database.create_object_store(INDEX);
                }
                if !names.contains(META) {
                    let parameters = IdbObjectStoreParameters::new();
                    let _ =
                        database.create_object_store_with_optional_parameters(META, &parameters);
                }
            }
        });
        request.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
        let result = request_future(request.unchecked_ref::<IdbRequest>()).await;
        request.set_onupgradeneeded(None);
        drop(upgrade);
        let database: IdbDatabase = result?.unchecked_into();
        // Another tab signed this user out (and deletes this database) or a newer version
        // upgrades it: let go at once so it is not blocked, and reload to show what is now true.
        let on_version_change = Closure::once_into_js({
            let database = database.clone();
            move || {
                database.close();
                let _ = gloo_utils::window().location().reload();
            }
        });
        database.set_onversionchange(Some(on_version_change.unchecked_ref()));
        Ok(database)
    }

    fn database(&self) -> IdbDatabase {
        self.database.borrow().clone()
    }

    /// Opens a new connection after the browser closed ours (it does after a disk error).
    async fn reconnect(&self) -> Result<(), StorageError> {
        if self.closed.get() {
            return Err(StorageError::Failed(
                "this storage was closed on sign-out".into(),
            ));
        }
        let database = Self::connect(&self.name).await?;
        *self.database.borrow_mut() = database;
        Ok(())
    }

    /// Performs all `ops` in one strict-durability transaction; resolves once it committed.
    pub async fn write(&self, ops: &[WriteOp]) -> Result<(), StorageError> {
        if ops.is_empty() {
            return Ok(());
        }
        let transaction = match self.strict_transaction() {
            Ok(transaction) => transaction,
            Err(_closed) => {
                self.reconnect().await?;
                self.strict_transaction().map_err(StorageError::from_js)?
            }
        };
        let done = transaction_future(&transaction);
        let result = (|| -> Result<(), JsValue> {
            let chunks = transaction.object_store(CHUNKS)?;
            let index = transaction.object_store(INDEX)?;
            let meta = transaction.object_store(META)?;
            for op in ops {
                match op {
                    WriteOp::PutChunk {
                        document,
                        sequence,
                        bytes,
                    } => {
                        let value = Uint8Array::from(bytes.as_slice());
                        chunks.put_with_key(&value, &chunk_key(document, *sequence))?;
                    }
                    WriteOp::DeleteChunksBelow { document, below } => {
                        if *below > 0 {
                            let range = IdbKeyRange::bound_with_lower_open_and_upper_open(
                                &chunk_key(document, 0),
                                &chunk_key(document, *below),
                                false,
                                true,
                            )?;
                            chunks.delete(&range)?;
                        }
                    }
                    WriteOp::PutEntry { document, bytes } => {
                        let value = Uint8Array::from(bytes.as_slice());
                        index.put_with_key(&value, &JsValue::from_str(document))?;
                    }
                    WriteOp::PutMeta { key, bytes } => {
                        let value = Uint8Array::from(bytes.as_slice());
                        meta.put_with_key(&value, &JsValue::from_str(key))?;
                    }
                    WriteOp::DeleteMeta { key } => {
                        meta.delete(&JsValue::from_str(key))?;
                    }
                }
            }
            Ok(())
        })();
        if let Err(error) = result {
            let _ = transaction.abort();
            return Err(StorageError::from_js(error));
        }
        done.await
    }

    /// `db.transaction(["chunks", "index", "meta"], "readwrite", { durability: "strict" })`. web-sys
    /// gates the options dictionary behind its unstable APIs, so the call is made through
    /// `Reflect`; browsers without the option ignore it and use their default durability.
    fn strict_transaction(&self) -> Result<IdbTransaction, JsValue> {
        let stores = Array::of3(&CHUNKS.into(), &INDEX.into(), &META.into());
        let options = js_sys::Object::new();
        js_sys::Reflect::set(&options, &"durability".into(), &"strict".into())?;
        let database = self.database();
        let method: js_sys::Function =
            js_sys::Reflect::get(&database, &"transaction".into())?.dyn_into()?;
        let transaction = method.call3(&database, &stores, &"readwrite".into(), &options)?;
        transaction.dyn_into()
    }

    /// Every stored document's chunks, in one read.
    pub async fn all_documents(&self) -> Result<Vec<StoredDocument>, StorageError> {
        let transaction = self
            .database()
            .transaction_with_str(CHUNKS)
            .map_err(StorageError::from_js)?;
        let store = transaction
            .object_store(CHUNKS)
            .map_err(StorageError::from_js)?;
        let keys_request = store.get_all_keys().map_err(StorageError::from_js)?;
        let values_request = store.get_all().map_err(StorageError::from_js)?;
        let keys: Array = request_future(&keys_request).await?.unchecked_into();
        let values: Array = request_future(&values_request).await?.unchecked_into();
        // Keys come sorted by [document, sequence], so each document's chunks are adjacent.
        let mut documents: Vec<StoredDocument> = Vec::new();
        for (key, value) in keys.iter().zip(values.iter()) {
            let key: Array = key.unchecked_into();
            let Some(document) = key.get(0).as_string() else {
                continue;
            };
            let sequence = key.get(1).as_f64().unwrap_or(0.0) as u32;
            let bytes = value.unchecked_into::<Uint8Array>().to_vec();
            match documents.last_mut() {
                Some((last, chunks)) if *last == document => chunks.push((sequence, bytes)),
                _ => documents.push((document, vec![(sequence, bytes)])),
            }
        }
        Ok(documents)
    }

    /// One document's chunks, in one read; empty when it is not stored.
    pub async fn document(&self, document: &str) -> Result<Chunks, StorageError> {
        let transaction = self
            .database()
            .transaction_with_str(CHUNKS)
            .map_err(StorageError::from_js)?;
        let store = transaction
            .object_store(CHUNKS)
            .map_err(StorageError::from_js)?;
        let range: JsValue = document_range(document)
            .map_err(StorageError::from_js)?
            .into();
        let keys_request = store
            .get_all_keys_with_key(&range)
            .map_err(StorageError::from_js)?;
        let values_request = store
            .get_all_with_key(&range)
            .map_err(StorageError::from_js)?;
        let keys: Array = request_future(&keys_request).await?.unchecked_into();
        let values: Array = request_future(&values_request).await?.unchecked_into();
        Ok(keys
            .iter()
            .zip(values.iter())
            .map(|(key, value)| {
                let key: Array = key.unchecked_into();
                let sequence = key.get(1).as_f64().unwrap_or(0.0) as u32;
                (sequence, value.unchecked_into::<Uint8Array>().to_vec())
            })
            .collect())
    }

    /// Every index entry `(document id, bytes)`, in one read.
    pub async fn all_entries(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let transaction = self
            .database()
            .transaction_with_str(INDEX)
            .map_err(StorageError::from_js)?;
        let store = transaction
            .object_store(INDEX)
            .map_err(StorageError::from_js)?;
        let keys_request = store.get_all_keys().map_err(StorageError::from_js)?;
        let values_request = store.get_all().map_err(StorageError::from_js)?;
        let keys: Array = request_future(&keys_request).await?.unchecked_into();
        let values: Array = request_future(&values_request).await?.unchecked_into();
        Ok(keys
            .iter()
            .zip(values.iter())
            .filter_map(|(key, value)| {
                Some((
                    key.as_string()?,
                    value.dyn_into::<Uint8Array>().ok()?.to_vec(),
                ))
            })
            .collect())
    }

    /// A small record, if present.
    pub async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let transaction = self
            .database()
            .transaction_with_str(META)
            .map_err(StorageError::from_js)?;
        let store = transaction
            .object_store(META)
            .map_err(StorageError::from_js)?;
        let value = request_future(
            &store
                .get(&JsValue::from_str(key))
                .map_err(StorageError::from_js)?,
        )
        .await?;
        if value.is_undefined() || value.is_null() {
            return Ok(None);
        }
        Ok(Some(value.unchecked_into::<Uint8Array>().to_vec()))
    }
}

impl Idb {
    /// Every small record whose key starts with `prefix`, in key order, in one read.
    pub async fn meta_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let transaction = self
            .database()
            .transaction_with_str(META)
            .map_err(StorageError::from_js)?;
        let store = transaction
            .object_store(META)
            .map_err(StorageError::from_js)?;
        // Keys are compared by UTF-16 code units: U+FFFF sorts after every key with the prefix.
        let range = IdbKeyRange::bound(
            &JsValue::from_str(prefix),
            &JsValue::from_str(&format!("{prefix}\u{ffff}")),
        )
        .map_err(StorageError::from_js)?;
        let keys_request = store
            .get_all_keys_with_key(&range)
            .map_err(StorageError::from_js)?;
        let values_request = store
            .get_all_with_key(&range)
            .map_err(StorageError::from_js)?;
        let keys: Array = request_future(&keys_request).await?.unchecked_into();
        let values: Array = request_future(&values_request).await?.unchecked_into();
        Ok(keys
            .iter()
            .zip(values.iter())
            .filter_map(|(key, value)| {
                let bytes = value.dyn_into::<Uint8Array>().ok()?.to_vec();
                Some((key.as_string()?, bytes))
            })
            .collect())
    }
}

/// The names of this origin's IndexedDB databases (`indexedDB.databases()`); empty where the
/// browser does not tell.
pub async fn database_names() -> Vec<String> {
    let Some(factory) = web_sys::window().and_then(|w| w.indexed_db().ok().flatten()) else {
        return Vec::new();
    };
    let Ok(method) = js_sys::Reflect::get(&factory, &"databases".into()) else {
        return Vec::new();
    };
    let Some(method) = method.dyn_ref::<js_sys::Function>() else {
        return Vec::new();
    };
    let Ok(promise) = method.call0(&factory) else {
        return Vec::new();
    };
    let Ok(list) = JsFuture::from(promise.unchecked_into::<Promise>()).await else {
        return Vec::new();
    };
    Array::from(&list)
        .iter()
        .filter_map(|info| {
            js_sys::Reflect::get(&info, &"name".into())
                .ok()?
                .as_string()
        })
        .collect()
}

/// Deletes a database and everything in it; resolves once it is gone. `on_blocked` runs if
/// another tab still holds it open (that tab closes it on `versionchange`).
pub async fn delete_database(
    name: &str,
    on_blocked: impl Fn() + 'static,
) -> Result<(), StorageError> {
    let factory = web_sys::window()
        .ok_or(StorageError::Unavailable)?
        .indexed_db()
        .map_err(StorageError::from_js)?
        .ok_or(StorageError::Unavailable)?;
    let request = factory
        .delete_database(name)
        .map_err(StorageError::from_js)?;
    let blocked = Closure::<dyn FnMut()>::new(on_blocked);
    request.set_onblocked(Some(blocked.as_ref().unchecked_ref()));
    let result = request_future(request.unchecked_ref::<IdbRequest>()).await;
    request.set_onblocked(None);
    drop(blocked);
    result.map(|_| ())
}

fn chunk_key(document: &str, sequence: u32) -> JsValue {
    Array::of2(&JsValue::from_str(document), &JsValue::from(sequence)).into()
}

/// Every chunk key of one document.
fn document_range(document: &str) -> Result<IdbKeyRange, JsValue> {
    IdbKeyRange::bound(
        &chunk_key(document, 0),
        &Array::of2(&JsValue::from_str(document), &JsValue::from(f64::INFINITY)),
    )
}

/// Resolves with a request's result, or fails with its error.
async fn request_future(request: &IdbRequest) -> Result<JsValue, StorageError> {
    let promise = Promise::new(&mut |resolve, reject| {
        let on_success = Closure::once_into_js({
            let request = request.clone();
            move || {
                let _ = resolve.call1(
                    &JsValue::NULL,
                    &request.result().unwrap_or(JsValue::UNDEFINED),
                );
            }
        });
        let on_error = Closure::once_into_js({
            let request = request.clone();
            move || {
                let error = request
                    .error()
                    .ok()
                    .flatten()
                    .map(JsValue::from)
                    .unwrap_or_else(|| JsValue::from_str("request failed"));
                let _ = reject.call1(&JsValue::NULL, &error);
            }
        });
        request.set_onsuccess(Some(on_success.unchecked_ref()));
        request.set_onerror(Some(on_error.unchecked_ref()));
    });
    JsFuture::from(promise).await.map_err(StorageError::from_js)
}

/// Resolves when a transaction has committed (`complete`), fails on `error` or `abort`.
fn transaction_future(
    transaction: &IdbTransaction,
) -> impl std::future::Future<Output = Result<(), StorageError>> + use<> {
    let promise = Promise::new(&mut |resolve, reject| {
        let on_complete = Closure::once_into_js(move || {
            let _ = resolve.call0(&JsValue::NULL);
        });
        let failed = {
            let transaction = transaction.clone();
            let reject = reject.clone();
            move || {
                let error = transaction
                    .error()
                    .map(JsValue::from)
                    .unwrap_or_else(|| JsValue::from_str("the transaction was aborted"));
                let _ = reject.call1(&JsValue::NULL, &error);
            }
        };
        let on_error = Closure::once_into_js(failed.clone());
        let on_abort = Closure::once_into_js(failed);
        transaction.set_oncomplete(Some(on_complete.unchecked_ref()));
        transaction.set_onerror(Some(on_error.unchecked_ref()));
        transaction.set_onabort(Some(on_abort.unchecked_ref()));
    });
    async move {
        JsFuture::from(promise)
            .await
            .map(|_| ())
            .map_err(StorageError::from_js)
    }
}
