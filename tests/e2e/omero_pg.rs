//! A real PostgreSQL server for the OMERO connector's tests: Debian's binaries, a temp dir, an unprivileged user.
//!
//! The binaries are found under `$HERALD_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`
//! (`make test-deps` installs Debian's `postgresql`). When the tests run as root, the server runs
//! as `nobody` (through `setpriv`, which execs, so the child is the postmaster itself). The
//! database `omero` holds OMERO's tables from `tests/omero/schema.sql` and the read-only role
//! `herald` from `tests/omero/grants.sql`; the helpers below write rows the way OMERO does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{free_port, repo};

/// The password of the `herald` role.
pub(crate) const HERALD_PASSWORD: &str = "herald-db-secret-7d1e";
/// OMERO's `omero.db.uuid` in the fixture.
pub(crate) const DB_UUID: &str = "6f1c3f3e-3b2a-4c8e-9a51-0d2b9c7e4a10";

/// A PostgreSQL server with OMERO's tables; stopped (fast shutdown) when dropped.
pub(crate) struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub(crate) port: u16,
    child: Option<Child>,
}

/// Where the PostgreSQL binaries are: `$HERALD_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`.
fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("HERALD_PG_BIN") {
        return PathBuf::from(dir);
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .max();
    newest.map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!("PostgreSQL not found under /usr/lib/postgresql: run `make test-deps` or set HERALD_PG_BIN")
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program` as the unprivileged user when we are root, else as ourselves.
fn unprivileged(program: &Path) -> Command {
    if !is_root() {
        return Command::new(program);
    }
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(program);
    command
}

/// Give `path` to `nobody` when we are root (the server's files must be its own).
fn hand_over(path: &Path) {
    if !is_root() {
        return;
    }
    let status = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chown {}", path.display());
}

impl Postgres {
    /// initdb, start, create `omero` with OMERO's tables and the `herald` role.
    pub(crate) fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        // nobody must reach its data dir under our temp dir.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        hand_over(&data);
        let bin = pg_bin();
        let out = unprivileged(&bin.join("initdb"))
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The superuser over the socket and loopback without a password; everyone else (herald) with one.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhost all postgres 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        let mut pg = Postgres {
            dir,
            bin,
            port: 0,
            child: None,
        };
        pg.run_on_a_free_port();
        pg.create_omero();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Start the postmaster on a free port, another one when the port was taken.
    fn run_on_a_free_port(&mut self) {
        for _ in 0..5 {
            if self.run_on(free_port()) {
                return;
            }
        }
        panic!("PostgreSQL did not start after 5 ports");
    }

    /// Start the postmaster on `port`; false when it exited (the port was taken).
    fn run_on(&mut self, port: u16) -> bool {
        let log = std::fs::File::create(self.dir.path().join(format!("pg-{port}.log"))).unwrap();
        let child = unprivileged(&self.bin.join("postgres"))
            .arg("-D")
            .arg(self.data())
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(self.data())
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.port = port;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                eprintln!(
                    "postgres exited ({status}) on port {port}: {}",
                    self.log(port)
                );
                self.child = None;
                return false;
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("PostgreSQL did not get ready: {}", self.log(port));
    }

    fn log(&self, port: u16) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("pg-{port}.log"))).unwrap_or_default()
    }

    /// Fast shutdown (SIGINT), as an outage.
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill has no memory preconditions; the pid is our live child's.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    }

    /// Start again on the same port after [`Postgres::stop`].
    pub(crate) fn restart(&mut self) {
        assert!(
            self.run_on(self.port),
            "PostgreSQL did not start again on its port"
        );
    }

    /// The URL Herald is configured with (the password comes from `HERALD_OMERO_DB_PASSWORD`).
    pub(crate) fn url(&self) -> String {
        format!("postgresql://herald@127.0.0.1:{}/omero", self.port)
    }

    /// A superuser session on `omero`, as OMERO's own server writes.
    pub(crate) fn omero(&self) -> Db {
        Db::connect(&format!(
            "host=127.0.0.1 port={} user=postgres dbname=omero",
            self.port
        ))
    }

    fn create_omero(&self) {
        let admin = Db::connect(&format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        ));
        admin.batch("CREATE DATABASE omero");
        let omero = self.omero();
        omero.batch(&std::fs::read_to_string(repo().join("tests/omero/schema.sql")).unwrap());
        let grants = std::fs::read_to_string(repo().join("tests/omero/grants.sql")).unwrap();
        omero.batch(&grants.replace(":'password'", &format!("'{HERALD_PASSWORD}'")));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One synchronous session (tokio-postgres on a runtime of its own).
pub(crate) struct Db {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Db {
    pub(crate) fn connect(params: &str) -> Db {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(params, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connect {params}: {e}"));
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
        });
        Db { runtime, client }
    }

    pub(crate) fn batch(&self, sql: &str) {
        self.runtime
            .block_on(self.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{e:?}: {sql}"));
    }

    /// The first column of the one row `sql` returns, as an i64.
    pub(crate) fn one(&self, sql: &str) -> i64 {
        self.runtime
            .block_on(self.client.query_one(sql, &[]))
            .unwrap_or_else(|e| panic!("{e:?}: {sql}"))
            .get(0)
    }
}

/// What OMERO writes for one service call, statement by statement, inside a transaction the
/// caller opens and commits: a new `event`, the objects, then `saveLogs` (eventlog ids reserved
/// in one block with `ome_nextval`, rows inserted) — so ids are taken before the commit.
pub(crate) struct Call<'a> {
    db: &'a Db,
    event: i64,
    logs: Vec<(String, String, i64)>,
}

impl<'a> Call<'a> {
    /// `BEGIN` and the call's `event` row (type User, by root in `system`, session 0).
    pub(crate) fn begin(db: &'a Db) -> Call<'a> {
        db.batch("BEGIN");
        let event = db.one(
            "INSERT INTO event (id, permissions, time, status, experimenter, experimentergroup, session, type) \
             VALUES (ome_nextval('seq_event'), -52, localtimestamp, NULL, 0, 0, 0, \
             (SELECT id FROM eventtype WHERE value = 'User')) RETURNING id",
        );
        Call {
            db,
            event,
            logs: Vec::new(),
        }
    }

    /// A new user in the `user` group (active) and any `extra` groups; returns its id.
    pub(crate) fn user(&mut self, name: &str, email: Option<&str>, extra: &[i64]) -> i64 {
        let email = email.map_or("NULL".to_owned(), |e| format!("'{e}'"));
        let id = self.db.one(&format!(
            "INSERT INTO experimenter (id, permissions, version, omename, firstname, lastname, email, ldap) \
             VALUES (ome_nextval('seq_experimenter'), -52, 0, '{name}', 'First', 'Last', {email}, false) \
             RETURNING id"
        ));
        self.log("INSERT", "ome.model.meta.Experimenter", id);
        for (index, group) in [1].iter().chain(extra).enumerate() {
            self.membership(*group, id, index, false);
        }
        id
    }

    /// A new group; returns its id.
    pub(crate) fn group(&mut self, name: &str) -> i64 {
        let id = self.db.one(&format!(
            "INSERT INTO experimentergroup (id, permissions, version, ldap, name) \
             VALUES (ome_nextval('seq_experimentergroup'), -120, 0, false, '{name}') RETURNING id"
        ));
        self.log("INSERT", "ome.model.meta.ExperimenterGroup", id);
        id
    }

    /// `user` joins `group`.
    pub(crate) fn membership(&mut self, group: i64, user: i64, index: usize, owner: bool) -> i64 {
        let id = self.db.one(&format!(
            "INSERT INTO groupexperimentermap (id, permissions, version, parent, child, child_index, owner) \
             VALUES (ome_nextval('seq_groupexperimentermap'), -52, 0, {group}, {user}, {index}, {owner}) \
             RETURNING id"
        ));
        self.log("INSERT", "ome.model.meta.GroupExperimenterMap", id);
        id
    }

    /// An image owned by `owner` in `group`.
    pub(crate) fn image(&mut self, name: &str, owner: i64, group: i64) -> i64 {
        let id = self.db.one(&format!(
            "INSERT INTO image (id, permissions, version, name, owner_id, group_id, creation_id, update_id) \
             VALUES (ome_nextval('seq_image'), -120, 0, '{name}', {owner}, {group}, {e}, {e}) RETURNING id",
            e = self.event
        ));
        self.log("INSERT", "ome.model.core.Image", id);
        id
    }

    /// A comment by `owner` linked to `image`; returns the comment's id.
    pub(crate) fn comment(&mut self, image: i64, text: &str, owner: i64, group: i64) -> i64 {
        let comment = self.db.one(&format!(
            "INSERT INTO annotation (discriminator, id, permissions, version, textvalue, owner_id, group_id, \
             creation_id, update_id) VALUES ('/basic/text/comment/', ome_nextval('seq_annotation'), -120, 0, \
             '{text}', {owner}, {group}, {e}, {e}) RETURNING id",
            e = self.event
        ));
        self.log("INSERT", "ome.model.annotations.CommentAnnotation", comment);
        let link = self.db.one(&format!(
            "INSERT INTO imageannotationlink (id, permissions, version, parent, child, owner_id, group_id, \
             creation_id, update_id) VALUES (ome_nextval('seq_imageannotationlink'), -120, 0, {image}, \
             {comment}, {owner}, {group}, {e}, {e}) RETURNING id",
            e = self.event
        ));
        self.log("INSERT", "ome.model.annotations.ImageAnnotationLink", link);
        comment
    }

    pub(crate) fn log(&mut self, action: &str, entity: &str, id: i64) {
        self.logs.push((action.into(), entity.into(), id));
    }

    /// `saveLogs`: reserve one block of eventlog ids and insert the rows; returns their ids.
    /// The transaction stays open.
    pub(crate) fn save_logs(&mut self) -> Vec<i64> {
        let n = self.logs.len() as i64;
        if n == 0 {
            return Vec::new();
        }
        let last = self
            .db
            .one(&format!("SELECT ome_nextval('seq_eventlog', {n})"));
        let first = last - n + 1;
        for (i, (action, entity, entity_id)) in self.logs.drain(..).enumerate() {
            self.db.batch(&format!(
                "INSERT INTO eventlog (id, permissions, action, entitytype, entityid, event) \
                 VALUES ({}, -52, '{action}', '{entity}', {entity_id}, {})",
                first + i as i64,
                self.event
            ));
        }
        (first..=last).collect()
    }

    /// `saveLogs` and `COMMIT`.
    pub(crate) fn commit(mut self) -> Vec<i64> {
        let ids = self.save_logs();
        self.db.batch("COMMIT");
        ids
    }
}
