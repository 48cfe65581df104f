//! The state store: SQLite inside the pool (`<pool>/config/zonevisor.db`).
//!
//! One row per instance (the whole VM object as JSON, plus the columns the
//! daemon looks rows up by) and one per image. Every change is one
//! transaction. Rows carry a lifecycle `phase` so that a crash half-way
//! through a create or an image install is found and undone at the next
//! start: `provisioning` / `installing` rows are rolled back.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use zonevisor_api::{ImageUuid, InstanceUuid, VmObject};

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

const SCHEMA: &str = "
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

fn str_of<'a>(vm: &'a VmObject, key: &str) -> Option<&'a str> {
    vm.get(key).and_then(Value::as_str)
}

/// Whether `table` (`vms` or `images`) has a row for `uuid`.
fn exists(c: &Connection, table: &str, uuid: &str) -> rusqlite::Result<bool> {
    c.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE uuid = ?1)"), [uuid], |r| r.get(0))
}

impl Store {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        // Added with user namespaces: each zone's id range (see `idmap_slot`).
        let has_slot: bool =
            conn.query_row("SELECT COUNT(*) FROM pragma_table_info('vms') WHERE name = 'idmap_slot'", [], |r| {
                r.get::<_, i64>(0).map(|n| n > 0)
            })?;
        if !has_slot {
            conn.execute_batch("ALTER TABLE vms ADD COLUMN idmap_slot INTEGER")?;
        }
        conn.execute_batch("CREATE UNIQUE INDEX IF NOT EXISTS vms_idmap_slot ON vms(idmap_slot)")?;
        Ok(Store { conn: Mutex::new(conn) })
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
            tx.commit()?;
            Ok(())
        })
    }

    /// Replaces an instance's object (and phase).
    pub fn put_vm(&self, uuid: InstanceUuid, phase: &str, vm: &VmObject) -> Result<bool> {
        let obj = serde_json::to_string(vm).expect("a JSON map serializes");
        self.with(|c| {
            let n = c.execute(
                "UPDATE vms SET alias = ?2, phase = ?3, obj = ?4 WHERE uuid = ?1",
                params![uuid.to_string(), str_of(vm, "alias"), phase, obj],
            )?;
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

    /// Deletes an instance row.
    pub fn delete_vm(&self, uuid: InstanceUuid) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM vms WHERE uuid = ?1", [uuid.to_string()])?;
            Ok(())
        })
    }

    /// How many instances use an image.
    pub fn image_clones(&self, image: ImageUuid) -> Result<u64> {
        self.with(|c| {
            let n: i64 =
                c.query_row("SELECT COUNT(*) FROM vms WHERE image_uuid = ?1", [image.to_string()], |r| r.get(0))?;
            Ok(n as u64)
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
}
