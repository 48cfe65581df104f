//! The state store: SQLite inside the pool (`<pool>/config/zonevisor.db`).
//!
//! One row per instance (the whole VM object as JSON, plus the columns the
//! daemon looks rows up by) and one per image. Every change is one
//! transaction. Rows carry a lifecycle `phase` so that a crash half-way
//! through a create or an image install is found and undone at the next
//! start: `provisioning` / `installing` rows are rolled back.
//!
//! # Schema versions
//!
//! The schema is built by numbered migrations (`MIGRATIONS`); the
//! database's `PRAGMA user_version` is the last one applied. [`Store::open`]
//! applies the missing ones in order, each in its own transaction together
//! with the new `user_version`, so a crash leaves the database at one
//! version or the next, never between. An applied migration is never
//! edited: a schema change is a new entry at the end.
//!
//! | version | what it adds                                                        |
//! |---------|---------------------------------------------------------------------|
//! | 1       | `vms`, `images`, `host`, and the triggers that keep instance and image uuids apart |
//! | 2       | `vms.idmap_slot` and its unique index (each zone's id range)        |
//! | 3       | `instance_images`: every image each instance depends on             |
//! | 4       | `nic_tags`, `fw_rules`, and `nic_addrs` (the MACs and IPs on each tag) |
//! | 5       | `image_sources` (SmartOS's default source to begin with) and `images.source` |
//!
//! Releases before versioning left `user_version` at 0 with the tables of
//! versions 1 and 2 (or 1 alone) in place; migrations 1 and 2 recognise
//! what is already there and keep every row. A database at a version
//! above [`SCHEMA_VERSION`] was written by a newer zonevisord: it is
//! refused before anything in it is changed.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde_json::Value;
use zonevisor_api::{ImageSource, ImageUuid, InstanceUuid, SourceType, VmObject};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("state database")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored object is not valid JSON.
    #[error("stored object for {0} is corrupt")]
    Corrupt(String, #[source] serde_json::Error),
    /// The uuid is already an image's (inserting an instance) or an
    /// instance's (inserting an image): each names a dataset, and the two
    /// never share one.
    #[error("{uuid} is already the uuid of {owner}")]
    UuidTaken {
        /// The uuid asked for.
        uuid: String,
        /// `"an image"` or `"an instance"`.
        owner: &'static str,
    },
    /// A uuid column holds something that is not a uuid.
    #[error("the state database holds {uuid:?} where a uuid belongs")]
    BadUuid {
        /// What it holds.
        uuid: String,
        /// Why it is not a uuid.
        #[source]
        source: uuid::Error,
    },
    /// The database was written by a newer zonevisord; it is left as it is.
    #[error(
        "the state database is at schema version {found}; this zonevisord knows up to {known}: upgrade zonevisord"
    )]
    TooNew {
        /// The database's `user_version`.
        found: u32,
        /// [`SCHEMA_VERSION`].
        known: u32,
    },
    /// A table the schema expects has other columns than it should: the
    /// file is not a state database zonevisord made.
    #[error("the state database's table {table} has no column {column}: not a database zonevisord made")]
    Unrecognized {
        /// The table.
        table: &'static str,
        /// The column it lacks.
        column: &'static str,
    },
    /// A MAC or IP address is already another instance's on the same nic
    /// tag.
    #[error("{what} is already used on nic tag {tag} by instance {by}")]
    NicTaken {
        /// `MAC <mac>` or `IP <address>`.
        what: String,
        /// The nic tag.
        tag: String,
        /// The instance holding it.
        by: String,
    },
    /// A migration failed; it was rolled back, and the database stays at
    /// the version before it.
    #[error("schema migration {version} ({name})")]
    Migration {
        /// The version it would have reached.
        version: u32,
        /// What it does.
        name: &'static str,
        /// Why it failed.
        #[source]
        source: Box<StoreError>,
    },
}

/// Result of store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// An instance row.
#[derive(Clone, Debug)]
pub struct VmRow {
    /// The VM object.
    pub vm: VmObject,
    /// `provisioning` while a create is under way, else `ready`.
    pub phase: String,
}

/// An image row.
#[derive(Clone, Debug)]
pub struct ImageRow {
    /// The manifest.
    pub manifest: Value,
    /// `installing` while an install is under way, else `ready`.
    pub phase: String,
}

/// The database.
pub struct Store {
    conn: Mutex<Connection>,
}

/// The schema version this build creates and understands: the last
/// migration's.
pub const SCHEMA_VERSION: u32 = 5;

/// One schema step: applied inside the transaction that also records its
/// version. Code rather than bare SQL, as some steps must look first (a
/// column added only where a release before versioning has not added it
/// yet) or derive rows from the stored JSON.
type Migrate = fn(&Transaction<'_>) -> Result<()>;

/// The migrations, in order: `(version, what it does, how)`. Entry `i`
/// takes the database from version `i` to `i + 1`.
const MIGRATIONS: &[(u32, &str, Migrate)] = &[
    (1, "instances, images and host settings", base_tables),
    (2, "an id range slot per instance", idmap_slots),
    (3, "the images each instance depends on", instance_images),
    (4, "nic tags, firewall rules and the addresses on each tag", networking),
    (5, "image sources, and the source of each image", image_sources),
];

// The table is numbered 1, 2, 3, ... and ends at SCHEMA_VERSION.
const _: () = {
    let mut i = 0;
    while i < MIGRATIONS.len() {
        assert!(MIGRATIONS[i].0 as usize == i + 1, "MIGRATIONS must be numbered 1, 2, 3, ...");
        i += 1;
    }
    assert!(MIGRATIONS[MIGRATIONS.len() - 1].0 == SCHEMA_VERSION, "SCHEMA_VERSION must be the last migration's");
};

/// Version 1: the tables as the releases before versioning created them
/// (hence `IF NOT EXISTS`: such a database has them, with its rows).
const BASE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS vms (
    uuid TEXT PRIMARY KEY,
    alias TEXT,
    brand TEXT NOT NULL,
    image_uuid TEXT,
    phase TEXT NOT NULL,
    obj TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS vms_image ON vms(image_uuid);
CREATE TABLE IF NOT EXISTS images (
    uuid TEXT PRIMARY KEY,
    phase TEXT NOT NULL,
    manifest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS host (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- An instance and an image never share a uuid: each names a dataset in
-- the pool, and a rollback of one must never destroy the other's.
CREATE TRIGGER IF NOT EXISTS vms_uuid_not_an_image BEFORE INSERT ON vms
WHEN EXISTS (SELECT 1 FROM images WHERE uuid = NEW.uuid)
BEGIN SELECT RAISE(ABORT, 'the uuid is an image''s'); END;
CREATE TRIGGER IF NOT EXISTS images_uuid_not_an_instance BEFORE INSERT ON images
WHEN EXISTS (SELECT 1 FROM vms WHERE uuid = NEW.uuid)
BEGIN SELECT RAISE(ABORT, 'the uuid is an instance''s'); END;
";

fn base_tables(tx: &Transaction<'_>) -> Result<()> {
    // Tables already there (an unversioned release's) must be the ones
    // zonevisord made.
    let expected: [(&'static str, &[&'static str]); 3] = [
        ("vms", &["uuid", "alias", "brand", "image_uuid", "phase", "obj"]),
        ("images", &["uuid", "phase", "manifest"]),
        ("host", &["key", "value"]),
    ];
    for (table, columns) in expected {
        let present: i64 = tx.query_row("SELECT COUNT(*) FROM pragma_table_info(?1)", [table], |r| r.get(0))?;
        for &column in columns {
            if present > 0 && !has_column(tx, table, column)? {
                return Err(StoreError::Unrecognized { table, column });
            }
        }
    }
    tx.execute_batch(BASE_TABLES)?;
    Ok(())
}

/// Version 2: each zone's id range. Releases before versioning added the
/// column at every start, so it may be there already, slots and all.
fn idmap_slots(tx: &Transaction<'_>) -> Result<()> {
    if !has_column(tx, "vms", "idmap_slot")? {
        tx.execute_batch("ALTER TABLE vms ADD COLUMN idmap_slot INTEGER")?;
    }
    tx.execute_batch("CREATE UNIQUE INDEX IF NOT EXISTS vms_idmap_slot ON vms(idmap_slot)")?;
    Ok(())
}

/// Version 3: which images each instance depends on (`imgadm delete`
/// refuses an image while any does), filled from the existing rows by the
/// same [`images_of`] the writes use, so a migrated database records what
/// a new one would. (A change to what `images_of` finds therefore needs a
/// migration that fills the table again.)
fn instance_images(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch(
        "CREATE TABLE instance_images (
             instance_uuid TEXT NOT NULL,
             image_uuid TEXT NOT NULL,
             PRIMARY KEY (instance_uuid, image_uuid)
         ) WITHOUT ROWID;
         CREATE INDEX instance_images_image ON instance_images(image_uuid);
         -- Whatever deletes an instance's row forgets what it used.
         CREATE TRIGGER vms_deleted_forget_images AFTER DELETE ON vms
         BEGIN DELETE FROM instance_images WHERE instance_uuid = OLD.uuid; END;",
    )?;
    for (uuid, vm) in stored_vms(tx)? {
        record_images(tx, &uuid, &vm)?;
    }
    Ok(())
}

/// Version 5: the image sources, in order (`imgadm sources`), starting
/// with SmartOS's default, and the source each image was imported from.
fn image_sources(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch(
        "CREATE TABLE image_sources (
             position INTEGER PRIMARY KEY,
             url TEXT NOT NULL,
             type TEXT NOT NULL,
             insecure INTEGER NOT NULL DEFAULT 0
         );
         ALTER TABLE images ADD COLUMN source TEXT;",
    )?;
    let default = ImageSource::default_source();
    tx.execute(
        "INSERT INTO image_sources (position, url, type, insecure) VALUES (0, ?1, ?2, 0)",
        params![default.url, default.source_type.as_str()],
    )?;
    Ok(())
}

/// Every instance row's uuid and object, for a migration that derives
/// rows from them.
fn stored_vms(tx: &Transaction<'_>) -> Result<Vec<(String, VmObject)>> {
    let rows: Vec<(String, String)> = {
        let mut stmt = tx.prepare("SELECT uuid, obj FROM vms")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    rows.into_iter()
        .map(|(uuid, obj)| {
            let vm = serde_json::from_str(&obj).map_err(|e| StoreError::Corrupt(uuid.clone(), e))?;
            Ok((uuid, vm))
        })
        .collect()
}

/// Version 4: nic tags (each a host network), firewall rules (each a
/// SmartOS rule object), and every MAC and IP in use on each tag, so that
/// two NICs on one tag never share either (the primary keys say so, in
/// the transaction that writes the instance). `dynamic` addresses are the
/// ones a managed network's DHCP reserved for a NIC whose `ips` says
/// `dhcp`; the others come from the instance's `ips`.
fn networking(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch(
        "CREATE TABLE nic_tags (
             name TEXT PRIMARY KEY,
             obj TEXT NOT NULL
         );
         CREATE TABLE fw_rules (
             uuid TEXT PRIMARY KEY,
             obj TEXT NOT NULL
         );
         CREATE TABLE nic_addrs (
             nic_tag TEXT NOT NULL,
             kind TEXT NOT NULL,
             value TEXT NOT NULL,
             instance_uuid TEXT NOT NULL,
             mac TEXT NOT NULL,
             dynamic INTEGER NOT NULL DEFAULT 0,
             PRIMARY KEY (nic_tag, kind, value)
         ) WITHOUT ROWID;
         CREATE INDEX nic_addrs_instance ON nic_addrs(instance_uuid);
         CREATE TRIGGER vms_deleted_forget_addrs AFTER DELETE ON vms
         BEGIN DELETE FROM nic_addrs WHERE instance_uuid = OLD.uuid; END;",
    )?;
    for (uuid, vm) in stored_vms(tx)? {
        record_nics(tx, &uuid, &vm)?;
    }
    Ok(())
}

/// What [`record_nics`] records for one NIC: its tag, MAC and static
/// addresses (without their prefix length).
pub(crate) fn nic_keys(vm: &VmObject) -> Vec<(String, String, Vec<String>)> {
    let nics = vm.get("nics").and_then(Value::as_array).into_iter().flatten();
    nics.filter_map(|n| {
        let tag = n.get("nic_tag").and_then(Value::as_str)?;
        let mac = n.get("mac").and_then(Value::as_str)?;
        let ips = n.get("ips").and_then(Value::as_array).into_iter().flatten();
        let addrs = ips
            .filter_map(Value::as_str)
            .filter_map(|ip| ip.split('/').next())
            .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
            .map(|a| a.to_string())
            .collect();
        Some((tag.to_string(), mac.to_string(), addrs))
    })
    .collect()
}

/// Records (replacing what was recorded) the MACs and static addresses
/// of instance `uuid`'s NICs, keeping the dynamic addresses of the MACs
/// still on the same tag. A MAC or address another instance holds on the
/// same tag fails with [`StoreError::NicTaken`].
fn record_nics(c: &Connection, uuid: &str, vm: &VmObject) -> Result<()> {
    let nics = nic_keys(vm);
    c.execute("DELETE FROM nic_addrs WHERE instance_uuid = ?1 AND dynamic = 0", [uuid])?;
    {
        let mut stmt =
            c.prepare_cached("SELECT nic_tag, mac FROM nic_addrs WHERE instance_uuid = ?1 AND dynamic = 1")?;
        let dynamic: Vec<(String, String)> =
            stmt.query_map([uuid], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
        for (tag, mac) in dynamic {
            if !nics.iter().any(|(t, m, _)| *t == tag && *m == mac) {
                c.execute(
                    "DELETE FROM nic_addrs WHERE instance_uuid = ?1 AND nic_tag = ?2 AND mac = ?3",
                    [uuid, &tag, &mac],
                )?;
            }
        }
    }
    let mut insert = c.prepare_cached(
        "INSERT INTO nic_addrs (nic_tag, kind, value, instance_uuid, mac, dynamic) VALUES (?1, ?2, ?3, ?4, ?5, 0)",
    )?;
    let mut holder =
        c.prepare_cached("SELECT instance_uuid FROM nic_addrs WHERE nic_tag = ?1 AND kind = ?2 AND value = ?3")?;
    for (tag, mac, addrs) in &nics {
        let keys = std::iter::once(("mac", mac.as_str())).chain(addrs.iter().map(|a| ("ip", a.as_str())));
        for (kind, value) in keys {
            if let Err(e) = insert.execute(params![tag, kind, value, uuid, mac]) {
                let by: Option<String> = holder.query_row(params![tag, kind, value], |r| r.get(0)).optional()?;
                return Err(match by {
                    Some(by) => StoreError::NicTaken {
                        what: format!("{} {value}", if kind == "mac" { "MAC" } else { "IP" }),
                        tag: tag.clone(),
                        by,
                    },
                    None => e.into(),
                });
            }
        }
    }
    Ok(())
}

fn str_of<'a>(vm: &'a VmObject, key: &str) -> Option<&'a str> {
    vm.get(key).and_then(Value::as_str)
}

/// Every image an instance depends on: its `image_uuid` (an lx zone's
/// root) and each `disks[].image_uuid` (a hardware VM's disks).
fn images_of(vm: &VmObject) -> BTreeSet<ImageUuid> {
    let disks = vm.get("disks").and_then(Value::as_array).into_iter().flatten();
    let disk_images = disks.filter_map(|d| d.get("image_uuid").and_then(Value::as_str));
    str_of(vm, "image_uuid").into_iter().chain(disk_images).filter_map(|u| u.parse().ok()).collect()
}

/// Records (replacing what was recorded) the images instance `uuid` uses.
fn record_images(c: &Connection, uuid: &str, vm: &VmObject) -> rusqlite::Result<()> {
    c.execute("DELETE FROM instance_images WHERE instance_uuid = ?1", [uuid])?;
    let mut insert = c.prepare_cached("INSERT INTO instance_images (instance_uuid, image_uuid) VALUES (?1, ?2)")?;
    for image in images_of(vm) {
        insert.execute(params![uuid, image.to_string()])?;
    }
    Ok(())
}

fn has_column(c: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    c.query_row("SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2", [table, column], |r| {
        r.get::<_, i64>(0).map(|n| n > 0)
    })
}

fn user_version(c: &Connection) -> rusqlite::Result<u32> {
    c.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Whether `table` (`vms` or `images`) has a row for `uuid`.
fn exists(c: &Connection, table: &str, uuid: &str) -> rusqlite::Result<bool> {
    c.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE uuid = ?1)"), [uuid], |r| r.get(0))
}

/// Refuses a database a newer zonevisord wrote.
fn check_not_newer(c: &Connection) -> Result<u32> {
    let found = user_version(c)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew { found, known: SCHEMA_VERSION });
    }
    Ok(found)
}

/// Applies the migrations the database lacks, each in its own
/// transaction. The write lock is taken first and the version read again
/// under it, so two daemons opening one database never both apply a step.
fn migrate(conn: &mut Connection) -> Result<()> {
    for &(version, name, step) in MIGRATIONS {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if check_not_newer(&tx)? >= version {
            continue;
        }
        step(&tx).map_err(|e| StoreError::Migration { version, name, source: Box::new(e) })?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, migration = name, "state database migrated");
    }
    Ok(())
}

impl Store {
    /// Opens (creating) the database at `path` and brings its schema to
    /// [`SCHEMA_VERSION`]. A database from a newer zonevisord is refused
    /// ([`StoreError::TooNew`]) before anything in it changes.
    pub fn open(path: &Path) -> Result<Store> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Before the journal mode, which writes to the file.
        let found = check_not_newer(&conn)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        if found < SCHEMA_VERSION {
            migrate(&mut conn)?;
        }
        let store = Store { conn: Mutex::new(conn) };
        tracing::info!(path = %path.display(), version = store.schema_version()?, "state database open");
        Ok(store)
    }

    /// The database's schema version (its `PRAGMA user_version`):
    /// [`SCHEMA_VERSION`] once open.
    pub fn schema_version(&self) -> Result<u32> {
        self.with(|c| Ok(user_version(c)?))
    }

    /// The id-range slot of an instance: allocated (the lowest free one,
    /// below `max`) on first use, kept with the row, freed with it. Slots
    /// are unique across instances (a unique index). `None` when the row
    /// is gone or every slot is taken.
    pub fn idmap_slot(&self, uuid: InstanceUuid, max: u32) -> Result<Option<u32>> {
        self.with(|c| {
            let tx = c.transaction()?;
            let row: Option<Option<u32>> = tx
                .query_row("SELECT idmap_slot FROM vms WHERE uuid = ?1", [uuid.to_string()], |r| r.get(0))
                .optional()?;
            let slot = match row {
                None => None,
                Some(Some(slot)) => Some(slot),
                Some(None) => {
                    let mut stmt =
                        tx.prepare("SELECT idmap_slot FROM vms WHERE idmap_slot IS NOT NULL ORDER BY idmap_slot")?;
                    let taken = stmt.query_map([], |r| r.get::<_, u32>(0))?.collect::<rusqlite::Result<Vec<u32>>>()?;
                    drop(stmt);
                    let mut free = 0u32;
                    for t in taken {
                        if t == free {
                            free += 1;
                        } else if t > free {
                            break;
                        }
                    }
                    if free >= max {
                        None
                    } else {
                        tx.execute("UPDATE vms SET idmap_slot = ?2 WHERE uuid = ?1", params![uuid.to_string(), free])?;
                        Some(free)
                    }
                }
            };
            tx.commit()?;
            Ok(slot)
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }

    /// Inserts a new instance row; fails if the uuid exists, as an
    /// instance's or ([`StoreError::UuidTaken`]) as an image's.
    pub fn insert_vm(&self, uuid: InstanceUuid, phase: &str, vm: &VmObject) -> Result<()> {
        let obj = serde_json::to_string(vm).expect("a JSON map serializes");
        self.with(|c| {
            let tx = c.transaction()?;
            if exists(&tx, "images", &uuid.to_string())? {
                return Err(StoreError::UuidTaken { uuid: uuid.to_string(), owner: "an image" });
            }
            tx.execute(
                "INSERT INTO vms (uuid, alias, brand, image_uuid, phase, obj) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    uuid.to_string(),
                    str_of(vm, "alias"),
                    str_of(vm, "brand").unwrap_or(""),
                    str_of(vm, "image_uuid"),
                    phase,
                    obj
                ],
            )?;
            record_images(&tx, &uuid.to_string(), vm)?;
            record_nics(&tx, &uuid.to_string(), vm)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Replaces an instance's object (and phase); false when the row is
    /// gone.
    pub fn put_vm(&self, uuid: InstanceUuid, phase: &str, vm: &VmObject) -> Result<bool> {
        let obj = serde_json::to_string(vm).expect("a JSON map serializes");
        self.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE vms SET alias = ?2, phase = ?3, obj = ?4 WHERE uuid = ?1",
                params![uuid.to_string(), str_of(vm, "alias"), phase, obj],
            )?;
            if n == 1 {
                record_images(&tx, &uuid.to_string(), vm)?;
                record_nics(&tx, &uuid.to_string(), vm)?;
            }
            tx.commit()?;
            Ok(n == 1)
        })
    }

    /// Reads, changes and writes one instance object in one transaction.
    /// Returns the new object, or `None` when the row is gone.
    pub fn modify_vm(&self, uuid: InstanceUuid, f: impl FnOnce(&mut VmObject)) -> Result<Option<VmObject>> {
        self.with(|c| {
            let tx = c.transaction()?;
            let row: Option<String> =
                tx.query_row("SELECT obj FROM vms WHERE uuid = ?1", [uuid.to_string()], |r| r.get(0)).optional()?;
            let Some(obj) = row else { return Ok(None) };
            let mut vm: VmObject = serde_json::from_str(&obj).map_err(|e| StoreError::Corrupt(uuid.to_string(), e))?;
            f(&mut vm);
            let obj = serde_json::to_string(&vm).expect("a JSON map serializes");
            tx.execute(
                "UPDATE vms SET alias = ?2, obj = ?3 WHERE uuid = ?1",
                params![uuid.to_string(), str_of(&vm, "alias"), obj],
            )?;
            record_images(&tx, &uuid.to_string(), &vm)?;
            record_nics(&tx, &uuid.to_string(), &vm)?;
            tx.commit()?;
            Ok(Some(vm))
        })
    }

    /// One instance.
    pub fn get_vm(&self, uuid: InstanceUuid) -> Result<Option<VmRow>> {
        self.with(|c| {
            let row: Option<(String, String)> = c
                .query_row("SELECT phase, obj FROM vms WHERE uuid = ?1", [uuid.to_string()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            row.map(|(phase, obj)| {
                let vm = serde_json::from_str(&obj).map_err(|e| StoreError::Corrupt(uuid.to_string(), e))?;
                Ok(VmRow { vm, phase })
            })
            .transpose()
        })
    }

    /// All instances, in uuid order.
    pub fn list_vms(&self) -> Result<Vec<VmRow>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT uuid, phase, obj FROM vms ORDER BY uuid")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, String>(2)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (uuid, phase, obj) = row?;
                let vm = serde_json::from_str(&obj).map_err(|e| StoreError::Corrupt(uuid, e))?;
                out.push(VmRow { vm, phase });
            }
            Ok(out)
        })
    }

    /// Deletes an instance row (and, by a trigger, the record of the
    /// images it used).
    pub fn delete_vm(&self, uuid: InstanceUuid) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM vms WHERE uuid = ?1", [uuid.to_string()])?;
            Ok(())
        })
    }

    /// How many instances use an image (as an lx zone's root or as a
    /// VM's disk).
    pub fn image_clones(&self, image: ImageUuid) -> Result<u64> {
        self.with(|c| {
            let n: i64 =
                c.query_row("SELECT COUNT(*) FROM instance_images WHERE image_uuid = ?1", [image.to_string()], |r| {
                    r.get(0)
                })?;
            Ok(n as u64)
        })
    }

    /// The instances that use an image (as an lx zone's root or as a
    /// VM's disk), in uuid order: those `imgadm delete` names as the
    /// image's dependent clones.
    pub fn instances_using_image(&self, image: ImageUuid) -> Result<Vec<InstanceUuid>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT instance_uuid FROM instance_images WHERE image_uuid = ?1 ORDER BY instance_uuid",
            )?;
            let uuids = stmt.query_map([image.to_string()], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for uuid in uuids {
                let uuid = uuid?;
                // Written only from typed uuids (`record_images`).
                let id = uuid.parse().map_err(|e| StoreError::BadUuid { uuid, source: e })?;
                out.push(id);
            }
            Ok(out)
        })
    }

    /// Inserts a new image row; fails if it exists, as an image's or
    /// ([`StoreError::UuidTaken`]) as an instance's.
    pub fn insert_image(&self, uuid: ImageUuid, phase: &str, manifest: &Value) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            if exists(&tx, "vms", &uuid.to_string())? {
                return Err(StoreError::UuidTaken { uuid: uuid.to_string(), owner: "an instance" });
            }
            tx.execute(
                "INSERT INTO images (uuid, phase, manifest) VALUES (?1, ?2, ?3)",
                params![uuid.to_string(), phase, manifest.to_string()],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Sets an image's phase.
    pub fn set_image_phase(&self, uuid: ImageUuid, phase: &str) -> Result<()> {
        self.with(|c| {
            c.execute("UPDATE images SET phase = ?2 WHERE uuid = ?1", params![uuid.to_string(), phase])?;
            Ok(())
        })
    }

    /// One image.
    pub fn get_image(&self, uuid: ImageUuid) -> Result<Option<ImageRow>> {
        self.with(|c| {
            let row: Option<(String, String)> = c
                .query_row("SELECT phase, manifest FROM images WHERE uuid = ?1", [uuid.to_string()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            row.map(|(phase, m)| {
                let manifest = serde_json::from_str(&m).map_err(|e| StoreError::Corrupt(uuid.to_string(), e))?;
                Ok(ImageRow { manifest, phase })
            })
            .transpose()
        })
    }

    /// All images with their uuids.
    pub fn list_images(&self) -> Result<Vec<(ImageUuid, ImageRow)>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT uuid, phase, manifest FROM images ORDER BY uuid")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, String>(2)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (uuid, phase, m) = row?;
                let manifest = serde_json::from_str(&m).map_err(|e| StoreError::Corrupt(uuid.clone(), e))?;
                if let Ok(id) = uuid.parse() {
                    out.push((id, ImageRow { manifest, phase }));
                }
            }
            Ok(out)
        })
    }

    /// Deletes an image row.
    pub fn delete_image(&self, uuid: ImageUuid) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM images WHERE uuid = ?1", [uuid.to_string()])?;
            Ok(())
        })
    }

    /// A host setting.
    pub fn host_get(&self, key: &str) -> Result<Option<String>> {
        self.with(|c| Ok(c.query_row("SELECT value FROM host WHERE key = ?1", [key], |r| r.get(0)).optional()?))
    }

    /// Sets a host setting.
    pub fn host_set(&self, key: &str, value: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO host (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(())
        })
    }
}

impl Store {
    /// The image sources, in order.
    pub fn image_sources(&self) -> Result<Vec<ImageSource>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT url, type, insecure FROM image_sources ORDER BY position")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (url, kind, insecure) = row?;
                // Written only from typed sources; an unknown type is skipped.
                if let Ok(source_type) = kind.parse::<SourceType>() {
                    out.push(ImageSource { url, source_type, insecure });
                }
            }
            Ok(out)
        })
    }

    /// Replaces the image sources with `sources`, in order, in one transaction.
    pub fn set_image_sources(&self, sources: &[ImageSource]) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM image_sources", [])?;
            for (i, s) in sources.iter().enumerate() {
                tx.execute(
                    "INSERT INTO image_sources (position, url, type, insecure) VALUES (?1, ?2, ?3, ?4)",
                    params![i as i64, s.url, s.source_type.as_str(), s.insecure],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// The URL of the source an image was imported from, if it was.
    pub fn image_source(&self, uuid: ImageUuid) -> Result<Option<String>> {
        self.with(|c| {
            Ok(c.query_row("SELECT source FROM images WHERE uuid = ?1", [uuid.to_string()], |r| r.get(0))
                .optional()?
                .flatten())
        })
    }

    /// Records the source an image was imported from.
    pub fn set_image_source(&self, uuid: ImageUuid, url: &str) -> Result<()> {
        self.with(|c| {
            c.execute("UPDATE images SET source = ?2 WHERE uuid = ?1", params![uuid.to_string(), url])?;
            Ok(())
        })
    }

    /// Replaces an image's manifest (`imgadm update`).
    pub fn set_image_manifest(&self, uuid: ImageUuid, manifest: &Value) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE images SET manifest = ?2 WHERE uuid = ?1",
                params![uuid.to_string(), manifest.to_string()],
            )?;
            Ok(())
        })
    }
}

/// A dynamic address reserved for a NIC (see [`Store::reserve_address`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reserved {
    /// The instance.
    pub instance: String,
    /// The NIC's MAC.
    pub mac: String,
    /// The address.
    pub addr: std::net::IpAddr,
}

impl Store {
    /// Every nic tag: `(name, object)`, by name.
    pub fn nic_tags(&self) -> Result<Vec<(String, Value)>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT name, obj FROM nic_tags ORDER BY name")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (name, obj) = row?;
                let v = serde_json::from_str(&obj).map_err(|e| StoreError::Corrupt(format!("nic tag {name}"), e))?;
                out.push((name, v));
            }
            Ok(out)
        })
    }

    /// Adds (`create`) or replaces a nic tag; adding one that exists
    /// returns false and changes nothing.
    pub fn put_nic_tag(&self, name: &str, obj: &Value, create: bool) -> Result<bool> {
        let text = obj.to_string();
        self.with(|c| {
            let n = if create {
                c.execute("INSERT OR IGNORE INTO nic_tags (name, obj) VALUES (?1, ?2)", params![name, text])?
            } else {
                c.execute("UPDATE nic_tags SET obj = ?2 WHERE name = ?1", params![name, text])?
            };
            Ok(n == 1)
        })
    }

    /// Deletes a nic tag; false when there was none.
    pub fn delete_nic_tag(&self, name: &str) -> Result<bool> {
        self.with(|c| Ok(c.execute("DELETE FROM nic_tags WHERE name = ?1", [name])? == 1))
    }

    /// The instances with a NIC on `tag`, in uuid order.
    pub fn instances_on_tag(&self, tag: &str) -> Result<Vec<String>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT instance_uuid FROM nic_addrs WHERE nic_tag = ?1 AND kind = 'mac' ORDER BY instance_uuid",
            )?;
            let rows = stmt.query_map([tag], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Which instance holds `kind` (`mac` or `ip`) `value` on `tag`.
    pub fn nic_holder(&self, tag: &str, kind: &str, value: &str) -> Result<Option<String>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT instance_uuid FROM nic_addrs WHERE nic_tag = ?1 AND kind = ?2 AND value = ?3",
                params![tag, kind, value],
                |r| r.get(0),
            )
            .optional()?)
        })
    }

    /// The address reserved on `tag` for `mac` of `instance`, reserving
    /// the first of `candidates` no one holds when there is none yet, in
    /// one transaction. `None` when every candidate is taken. The
    /// reservation goes with the instance's row, or when the MAC leaves
    /// the tag.
    pub fn reserve_address(
        &self,
        tag: &str,
        instance: &str,
        mac: &str,
        candidates: impl Iterator<Item = std::net::IpAddr>,
    ) -> Result<Option<std::net::IpAddr>> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let have: Option<String> = tx
                .query_row(
                    "SELECT value FROM nic_addrs WHERE nic_tag = ?1 AND kind = 'ip' AND mac = ?2 AND instance_uuid = ?3 AND dynamic = 1",
                    params![tag, mac, instance],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(a) = have.and_then(|a| a.parse().ok()) {
                return Ok(Some(a));
            }
            let mut got = None;
            for addr in candidates {
                let n = tx.execute(
                    "INSERT OR IGNORE INTO nic_addrs (nic_tag, kind, value, instance_uuid, mac, dynamic) VALUES (?1, 'ip', ?2, ?3, ?4, 1)",
                    params![tag, addr.to_string(), instance, mac],
                )?;
                if n == 1 {
                    got = Some(addr);
                    break;
                }
            }
            tx.commit()?;
            Ok(got)
        })
    }

    /// The dynamic addresses reserved on `tag`.
    pub fn reserved_addresses(&self, tag: &str) -> Result<Vec<Reserved>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT instance_uuid, mac, value FROM nic_addrs WHERE nic_tag = ?1 AND kind = 'ip' AND dynamic = 1 ORDER BY value",
            )?;
            let rows = stmt.query_map([tag], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (instance, mac, value) = row?;
                if let Ok(addr) = value.parse() {
                    out.push(Reserved { instance, mac, addr });
                }
            }
            Ok(out)
        })
    }

    /// Every firewall rule object, by uuid.
    pub fn fw_rules(&self) -> Result<Vec<Value>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT uuid, obj FROM fw_rules ORDER BY uuid")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (uuid, obj) = row?;
                out.push(
                    serde_json::from_str(&obj).map_err(|e| StoreError::Corrupt(format!("firewall rule {uuid}"), e))?,
                );
            }
            Ok(out)
        })
    }

    /// Writes firewall rules (`put`, keyed by their `uuid`) and deletes
    /// others (`delete`), in one transaction.
    pub fn change_fw_rules(&self, put: &[(String, Value)], delete: &[String]) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            for (uuid, obj) in put {
                tx.execute(
                    "INSERT INTO fw_rules (uuid, obj) VALUES (?1, ?2) ON CONFLICT(uuid) DO UPDATE SET obj = excluded.obj",
                    params![uuid, obj.to_string()],
                )?;
            }
            for uuid in delete {
                tx.execute("DELETE FROM fw_rules WHERE uuid = ?1", [uuid])?;
            }
            tx.commit()?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vm_rows_round_trip_and_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let id = InstanceUuid::new_random();
        let img = ImageUuid::new_random();
        let vm: VmObject = json!({"uuid": id.to_string(), "brand": "lx", "alias": "a", "image_uuid": img.to_string()})
            .as_object()
            .unwrap()
            .clone();
        store.insert_vm(id, "provisioning", &vm).unwrap();
        assert!(store.insert_vm(id, "provisioning", &vm).is_err(), "duplicate uuid must fail");
        assert_eq!(store.image_clones(img).unwrap(), 1);
        let changed = store.modify_vm(id, |v| {
            v.insert("alias".into(), json!("b"));
        });
        assert_eq!(changed.unwrap().unwrap()["alias"], "b");
        let row = store.get_vm(id).unwrap().unwrap();
        assert_eq!((row.phase.as_str(), row.vm["alias"].as_str()), ("provisioning", Some("b")));
        store.delete_vm(id).unwrap();
        assert!(store.get_vm(id).unwrap().is_none());
        assert!(store.modify_vm(id, |_| {}).unwrap().is_none());
        // Id-range slots: lowest free first, stable, unique, freed with the row.
        let (a, b) = (InstanceUuid::new_random(), InstanceUuid::new_random());
        store.insert_vm(a, "ready", &vm).unwrap();
        store.insert_vm(b, "ready", &vm).unwrap();
        assert_eq!(store.idmap_slot(a, 10).unwrap(), Some(0));
        assert_eq!(store.idmap_slot(b, 10).unwrap(), Some(1));
        assert_eq!(store.idmap_slot(a, 10).unwrap(), Some(0), "stable");
        store.delete_vm(a).unwrap();
        assert_eq!(store.idmap_slot(a, 10).unwrap(), None, "no row, no slot");
        store.insert_vm(a, "ready", &vm).unwrap();
        assert_eq!(store.idmap_slot(a, 10).unwrap(), Some(0), "a freed slot is reused");
        let c = InstanceUuid::new_random();
        store.insert_vm(c, "ready", &vm).unwrap();
        assert_eq!(store.idmap_slot(c, 2).unwrap(), None, "every slot taken");
        assert_eq!(store.idmap_slot(c, 3).unwrap(), Some(2));
        // Instances and images never share a uuid, whichever comes first.
        let shared = InstanceUuid::new_random();
        let as_image: ImageUuid = shared.to_string().parse().unwrap();
        store.insert_image(as_image, "ready", &json!({})).unwrap();
        assert!(matches!(store.insert_vm(shared, "provisioning", &vm), Err(StoreError::UuidTaken { .. })));
        assert!(store.get_vm(shared).unwrap().is_none());
        store.delete_image(as_image).unwrap();
        store.insert_vm(shared, "provisioning", &vm).unwrap();
        assert!(matches!(store.insert_image(as_image, "installing", &json!({})), Err(StoreError::UuidTaken { .. })));
        assert!(store.get_image(as_image).unwrap().is_none());
        // The schema refuses it too, should a statement bypass the check.
        let direct = store.with(|c| {
            Ok(c.execute("INSERT INTO images (uuid, phase, manifest) VALUES (?1, 'ready', '{}')", [shared.to_string()]))
        });
        assert!(direct.unwrap().is_err(), "the trigger let an image take an instance's uuid");
        store.host_set("k", "1").unwrap();
        store.host_set("k", "2").unwrap();
        assert_eq!(store.host_get("k").unwrap().as_deref(), Some("2"));
    }

    /// The schema as the release before versioning (commit df84e2b, the
    /// last release) created it at every start, word for word.
    const DF84E2B_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS vms (
    uuid TEXT PRIMARY KEY,
    alias TEXT,
    brand TEXT NOT NULL,
    image_uuid TEXT,
    phase TEXT NOT NULL,
    obj TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS vms_image ON vms(image_uuid);
CREATE TABLE IF NOT EXISTS images (
    uuid TEXT PRIMARY KEY,
    phase TEXT NOT NULL,
    manifest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS host (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- An instance and an image never share a uuid: each names a dataset in
-- the pool, and a rollback of one must never destroy the other's.
CREATE TRIGGER IF NOT EXISTS vms_uuid_not_an_image BEFORE INSERT ON vms
WHEN EXISTS (SELECT 1 FROM images WHERE uuid = NEW.uuid)
BEGIN SELECT RAISE(ABORT, 'the uuid is an image''s'); END;
CREATE TRIGGER IF NOT EXISTS images_uuid_not_an_instance BEFORE INSERT ON images
WHEN EXISTS (SELECT 1 FROM vms WHERE uuid = NEW.uuid)
BEGIN SELECT RAISE(ABORT, 'the uuid is an instance''s'); END;
";

    /// The schema before user namespaces (commit 67c4e2f's parent): no
    /// `idmap_slot`, no uuid triggers.
    const BEFORE_USERNS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS vms (
    uuid TEXT PRIMARY KEY,
    alias TEXT,
    brand TEXT NOT NULL,
    image_uuid TEXT,
    phase TEXT NOT NULL,
    obj TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS vms_image ON vms(image_uuid);
CREATE TABLE IF NOT EXISTS images (
    uuid TEXT PRIMARY KEY,
    phase TEXT NOT NULL,
    manifest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS host (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

    /// Opens `path` as release df84e2b's `Store::open` did (with
    /// `idmap_slot`) or as the one before user namespaces (without).
    fn unversioned_db(path: &Path, with_slot: bool) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        if with_slot {
            conn.execute_batch(DF84E2B_SCHEMA).unwrap();
            conn.execute_batch("ALTER TABLE vms ADD COLUMN idmap_slot INTEGER").unwrap();
            conn.execute_batch("CREATE UNIQUE INDEX IF NOT EXISTS vms_idmap_slot ON vms(idmap_slot)").unwrap();
        } else {
            conn.execute_batch(BEFORE_USERNS_SCHEMA).unwrap();
        }
        conn
    }

    fn vm_of(v: Value) -> VmObject {
        v.as_object().unwrap().clone()
    }

    /// Writes an instance row as the old releases' `insert_vm` did.
    fn old_insert(c: &Connection, uuid: InstanceUuid, phase: &str, vm: &VmObject) {
        c.execute(
            "INSERT INTO vms (uuid, alias, brand, image_uuid, phase, obj) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                uuid.to_string(),
                str_of(vm, "alias"),
                str_of(vm, "brand").unwrap_or(""),
                str_of(vm, "image_uuid"),
                phase,
                serde_json::to_string(vm).unwrap()
            ],
        )
        .unwrap();
    }

    fn raw_version(path: &Path) -> u32 {
        user_version(&Connection::open(path).unwrap()).unwrap()
    }

    fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
        v.sort();
        v
    }

    #[test]
    fn image_sources_start_with_smartos_default_and_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        assert_eq!(store.image_sources().unwrap(), vec![ImageSource::default_source()]);
        let docker = ImageSource { url: "https://docker.io".into(), source_type: SourceType::Docker, insecure: true };
        store.set_image_sources(&[docker.clone(), ImageSource::default_source()]).unwrap();
        assert_eq!(store.image_sources().unwrap(), vec![docker, ImageSource::default_source()]);
        store.set_image_sources(&[]).unwrap();
        assert_eq!(store.image_sources().unwrap(), vec![], "an emptied list stays empty");
        let img = ImageUuid::new_random();
        store.insert_image(img, "ready", &json!({"uuid": img.to_string()})).unwrap();
        assert_eq!(store.image_source(img).unwrap(), None);
        store.set_image_source(img, "http://x").unwrap();
        assert_eq!(store.image_source(img).unwrap().as_deref(), Some("http://x"));
        store.set_image_manifest(img, &json!({"uuid": img.to_string(), "name": "n"})).unwrap();
        assert_eq!(store.get_image(img).unwrap().unwrap().manifest["name"], "n");
    }

    #[test]
    fn a_new_database_is_at_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(SCHEMA_VERSION as usize, MIGRATIONS.len());
        drop(store);
        assert_eq!(raw_version(&path), SCHEMA_VERSION);
    }

    /// Rows as the previous releases left them: two lx zones on image `a`
    /// (one with an id-range slot, one without), a provisioning one on `b`
    /// and a hardware VM whose disks come from `b` and `c`.
    fn upgrade_keeps_rows(with_slot: bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (img_a, img_b, img_c) = (ImageUuid::new_random(), ImageUuid::new_random(), ImageUuid::new_random());
        let ids: Vec<InstanceUuid> = sorted((0..4).map(|_| InstanceUuid::new_random()).collect());
        let (slotted, unslotted, provisioning, hvm) = (ids[0], ids[1], ids[2], ids[3]);
        let lx = |id: InstanceUuid, img: ImageUuid| {
            vm_of(json!({"uuid": id.to_string(), "brand": "lx", "alias": id.to_string(), "image_uuid": img.to_string(),
                         "state": "running", "autoboot": true}))
        };
        let kvm = vm_of(json!({"uuid": hvm.to_string(), "brand": "kvm", "state": "stopped",
            "disks": [{"image_uuid": img_b.to_string(), "boot": true}, {"image_uuid": img_c.to_string()},
                      {"size": 1024}, {"image_uuid": img_b.to_string()}]}));
        let before = [
            (slotted, "ready", lx(slotted, img_a)),
            (unslotted, "ready", lx(unslotted, img_a)),
            (provisioning, "provisioning", lx(provisioning, img_b)),
            (hvm, "ready", kvm),
        ];
        {
            let c = unversioned_db(&path, with_slot);
            for (id, phase, vm) in &before {
                old_insert(&c, *id, phase, vm);
            }
            if with_slot {
                c.execute("UPDATE vms SET idmap_slot = 1 WHERE uuid = ?1", [slotted.to_string()]).unwrap();
            }
            for img in [img_a, img_b, img_c] {
                c.execute(
                    "INSERT INTO images (uuid, phase, manifest) VALUES (?1, 'ready', ?2)",
                    params![img.to_string(), json!({"uuid": img.to_string()}).to_string()],
                )
                .unwrap();
            }
            c.execute("INSERT INTO host (key, value) VALUES ('boot_id', 'b1')", []).unwrap();
            assert_eq!(user_version(&c).unwrap(), 0);
        }

        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let rows = store.list_vms().unwrap();
        assert_eq!(rows.len(), before.len());
        for (row, (_, phase, vm)) in rows.iter().zip(&before) {
            assert_eq!((&row.phase, &row.vm), (&phase.to_string(), vm));
        }
        assert_eq!(store.list_images().unwrap().len(), 3);
        assert_eq!(store.host_get("boot_id").unwrap().as_deref(), Some("b1"));
        // Every dependency recorded, each once.
        assert_eq!(store.instances_using_image(img_a).unwrap(), [slotted, unslotted]);
        assert_eq!(store.instances_using_image(img_b).unwrap(), [provisioning, hvm]);
        assert_eq!(store.instances_using_image(img_c).unwrap(), [hvm]);
        assert_eq!(store.image_clones(img_b).unwrap(), 2);
        // Slots: the one set is kept, the unset one gets the lowest free.
        if with_slot {
            assert_eq!(store.idmap_slot(slotted, 10).unwrap(), Some(1), "the slot survived");
            assert_eq!(store.idmap_slot(unslotted, 10).unwrap(), Some(0));
        } else {
            assert_eq!(store.idmap_slot(slotted, 10).unwrap(), Some(0));
            assert_eq!(store.idmap_slot(unslotted, 10).unwrap(), Some(1));
        }
        assert!(
            store
                .with(|c| Ok(c.execute("UPDATE vms SET idmap_slot = 0 WHERE uuid = ?1", [hvm.to_string()])))
                .unwrap()
                .is_err(),
            "slots are unique after the upgrade"
        );
        drop(store);

        // Reopening applies nothing again and changes nothing.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.list_vms().unwrap().len(), before.len());
        assert_eq!(store.instances_using_image(img_b).unwrap(), [provisioning, hvm]);
        assert_eq!(store.idmap_slot(slotted, 10).unwrap(), if with_slot { Some(1) } else { Some(0) });
    }

    #[test]
    fn a_database_of_the_previous_release_upgrades_with_its_rows_and_slots() {
        upgrade_keeps_rows(true);
    }

    #[test]
    fn a_database_from_before_id_range_slots_upgrades_with_its_rows() {
        upgrade_keeps_rows(false);
    }

    #[test]
    fn macs_and_addresses_are_unique_per_tag_and_leave_with_their_instance() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let (a, b) = (InstanceUuid::new_random(), InstanceUuid::new_random());
        let nic = |tag: &str, mac: &str, ips: &[&str]| json!({"nic_tag": tag, "mac": mac, "ips": ips});
        let vm = |nics: Vec<Value>| vm_of(json!({"brand": "lx", "nics": nics}));
        store.insert_vm(a, "ready", &vm(vec![nic("ext", "02:00:00:00:00:01", &["10.0.0.5/24", "dhcp"])])).unwrap();
        assert_eq!(store.nic_holder("ext", "ip", "10.0.0.5").unwrap(), Some(a.to_string()));
        assert_eq!(store.instances_on_tag("ext").unwrap(), vec![a.to_string()]);
        // The same IP or MAC on the same tag: refused, and the row is not written.
        for taken in [nic("ext", "02:00:00:00:00:02", &["10.0.0.5/24"]), nic("ext", "02:00:00:00:00:01", &[])] {
            let e = store.insert_vm(b, "ready", &vm(vec![taken])).unwrap_err();
            assert!(matches!(e, StoreError::NicTaken { .. }), "{e}");
            assert!(store.get_vm(b).unwrap().is_none());
        }
        // On another tag they are free.
        store.insert_vm(b, "ready", &vm(vec![nic("other", "02:00:00:00:00:01", &["10.0.0.5/24"])])).unwrap();
        // A reserved address: stable, never given twice, kept while the MAC stays.
        let pool = || ["10.0.0.5", "10.0.0.6", "10.0.0.7"].into_iter().map(|a| a.parse().unwrap());
        let got = store.reserve_address("ext", &a.to_string(), "02:00:00:00:00:01", pool()).unwrap();
        assert_eq!(got, Some("10.0.0.6".parse().unwrap()));
        assert_eq!(store.reserve_address("ext", &a.to_string(), "02:00:00:00:00:01", pool()).unwrap(), got);
        store.put_vm(a, "ready", &vm(vec![nic("ext", "02:00:00:00:00:01", &["dhcp"])])).unwrap();
        assert_eq!(store.reserved_addresses("ext").unwrap().len(), 1);
        assert_eq!(store.nic_holder("ext", "ip", "10.0.0.5").unwrap(), None, "the static address was released");
        // The MAC leaves the tag: its reservation goes; the row goes: everything goes.
        store.put_vm(a, "ready", &vm(vec![nic("ext", "02:00:00:00:00:09", &["dhcp"])])).unwrap();
        assert!(store.reserved_addresses("ext").unwrap().is_empty());
        store.delete_vm(a).unwrap();
        assert!(store.instances_on_tag("ext").unwrap().is_empty());
    }

    #[test]
    fn instance_images_follow_inserts_updates_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let (img_a, img_b) = (ImageUuid::new_random(), ImageUuid::new_random());
        let (zone, hvm) = (InstanceUuid::new_random(), InstanceUuid::new_random());
        store.insert_vm(zone, "provisioning", &vm_of(json!({"brand": "lx", "image_uuid": img_a.to_string()}))).unwrap();
        let disks = |imgs: &[ImageUuid]| {
            let disks: Vec<Value> = imgs.iter().map(|i| json!({"image_uuid": i.to_string()})).collect();
            vm_of(json!({"brand": "bhyve", "disks": disks}))
        };
        store.insert_vm(hvm, "provisioning", &disks(&[img_a])).unwrap();
        assert_eq!(store.instances_using_image(img_a).unwrap(), sorted(vec![zone, hvm]));
        // An update that adds a disk (put_vm) and one that removes it (modify_vm).
        assert!(store.put_vm(hvm, "ready", &disks(&[img_a, img_b])).unwrap());
        assert_eq!(store.instances_using_image(img_b).unwrap(), [hvm]);
        store
            .modify_vm(hvm, |vm| {
                *vm = disks(&[img_b]);
            })
            .unwrap();
        assert_eq!(store.instances_using_image(img_a).unwrap(), [zone]);
        assert_eq!(store.image_clones(img_b).unwrap(), 1);
        // A put for a row that is gone records nothing.
        let gone = InstanceUuid::new_random();
        assert!(!store.put_vm(gone, "ready", &disks(&[img_a])).unwrap());
        assert_eq!(store.image_clones(img_a).unwrap(), 1);
        // An insert refused (the uuid is an image's) records nothing.
        let shared = InstanceUuid::new_random();
        store.insert_image(shared.to_string().parse().unwrap(), "ready", &json!({})).unwrap();
        assert!(store.insert_vm(shared, "provisioning", &disks(&[img_a])).is_err());
        assert_eq!(store.image_clones(img_a).unwrap(), 1);
        store.delete_vm(zone).unwrap();
        store.delete_vm(hvm).unwrap();
        assert!(store.instances_using_image(img_a).unwrap().is_empty());
        assert!(store.instances_using_image(img_b).unwrap().is_empty());
        let left: i64 =
            store.with(|c| Ok(c.query_row("SELECT COUNT(*) FROM instance_images", [], |r| r.get(0))?)).unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn a_database_of_a_newer_zonevisord_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE vms (uuid TEXT PRIMARY KEY, shape TEXT); INSERT INTO vms VALUES ('x', 'new');",
            )
            .unwrap();
            c.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        let files = || {
            let mut names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            names.sort();
            names
        };
        let before = files();
        let err = Store::open(&path).err().expect("a newer database must be refused");
        assert!(
            matches!(err, StoreError::TooNew { found, known } if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION)
        );
        assert_eq!(
            err.to_string(),
            format!(
                "the state database is at schema version {}; this zonevisord knows up to {SCHEMA_VERSION}: upgrade zonevisord",
                SCHEMA_VERSION + 1
            )
        );
        assert!(std::fs::read(&path).unwrap() == bytes, "the refused database was modified");
        assert_eq!(files(), before, "files appeared beside the refused database");
    }

    #[test]
    fn a_failed_migration_leaves_the_version_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let c = unversioned_db(&path, true);
            c.execute(
                "INSERT INTO vms (uuid, brand, phase, obj) VALUES (?1, 'lx', 'ready', '{not json')",
                [InstanceUuid::new_random().to_string()],
            )
            .unwrap();
        }
        let err = Store::open(&path).err().expect("a corrupt row stops migration 3");
        assert!(matches!(err, StoreError::Migration { version: 3, .. }), "{err:?}");
        assert_eq!(raw_version(&path), 2, "migrations 1 and 2 are kept, 3 is rolled back");
        let c = Connection::open(&path).unwrap();
        assert!(!has_column(&c, "instance_images", "image_uuid").unwrap(), "migration 3's table was kept");
    }

    #[test]
    fn tables_zonevisord_did_not_make_are_not_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE vms (uuid TEXT PRIMARY KEY, name TEXT)").unwrap();
        let err = Store::open(&path).err().expect("a foreign vms table must be refused");
        assert!(
            matches!(&err, StoreError::Migration { version: 1, source, .. }
                if matches!(**source, StoreError::Unrecognized { table: "vms", column: "alias" })),
            "{err:?}"
        );
        assert_eq!(raw_version(&path), 0);
    }
}
