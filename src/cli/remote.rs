//! The client commands: `schema write|read`, `relationship write|read|delete`, `check`,
//! `lookup resources|subjects`, `import`, `export`, `watch`, `tenant …`, each a call to a
//! server through `server::client`, with SpiceDB's text forms in and out.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Map, Value};

use crate::engine::{CheckRequest, Decision};
use crate::model::{ObjectRef, Relationship, SubjectRef};
use crate::server::client::{Client, Endpoint, ReadAt, Tls, Update};
use crate::store::RelationshipFilter;

/// Where the server is and how to talk to it (flags or environment variables).
#[derive(clap::Args, Clone, Debug)]
pub struct Remote {
    /// The server: `host:port`, or an `http://` or `https://` URL.
    #[arg(long, env = "PEMBA_ENDPOINT", default_value = "127.0.0.1:50051")]
    pub endpoint: String,
    /// The bearer key: a tenant's key (for `tenant` commands, the admin key; `PEMBA_ADMIN_KEY`
    /// is read there too).
    #[arg(long, env = "PEMBA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Use TLS, trusting the system's roots (the default for a host that is not loopback).
    #[arg(long, conflicts_with = "insecure")]
    pub tls: bool,
    /// Use TLS, trusting this PEM CA certificate.
    #[arg(long, conflicts_with = "insecure")]
    pub ca_cert: Option<PathBuf>,
    /// No TLS, even to a host that is not loopback.
    #[arg(long)]
    pub insecure: bool,
}

/// The snapshot reads are answered at.
#[derive(clap::Args, Clone, Debug)]
pub struct At {
    /// `full` (the default: every acknowledged write), `minimize` (the server's choice, possibly
    /// a little stale), `at-least:TOKEN` or `exact:TOKEN` (a ZedToken a write printed).
    #[arg(long, default_value = "full")]
    pub consistency: String,
}

impl At {
    fn read_at(&self) -> anyhow::Result<ReadAt> {
        Ok(match self.consistency.as_str() {
            "full" => ReadAt::FullyConsistent,
            "minimize" => ReadAt::MinimizeLatency,
            c => match c.split_once(':') {
                Some(("at-least", t)) => ReadAt::AtLeast(t.to_string()),
                Some(("exact", t)) => ReadAt::Exact(t.to_string()),
                _ => anyhow::bail!("`--consistency {c}`: use full, minimize, at-least:TOKEN or exact:TOKEN"),
            },
        })
    }
}

impl Remote {
    fn endpoint(&self, admin: bool) -> anyhow::Result<Endpoint> {
        let token = match (&self.token, admin) {
            (Some(t), _) => t.clone(),
            (None, true) => std::env::var("PEMBA_ADMIN_KEY")
                .map_err(|_| anyhow::anyhow!("no admin key: give `--token` or set PEMBA_ADMIN_KEY"))?,
            (None, false) => anyhow::bail!("no key: give `--token` or set PEMBA_TOKEN"),
        };
        let tls = match (&self.ca_cert, self.tls, self.insecure) {
            (Some(ca), _, _) => Tls::CaFile(ca.clone()),
            (None, true, _) => Tls::System,
            (None, false, true) => Tls::Plaintext,
            (None, false, false) => Tls::Auto,
        };
        Ok(Endpoint { address: self.endpoint.clone(), token, tls })
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum RelationshipCommand {
    /// Write relationships given in SpiceDB's text form (`document:1#viewer@user:ann`, with
    /// optional `[caveat:{…}]` and `[expiration:…]`), as arguments or lines of a file; one
    /// transaction. Prints the write's ZedToken.
    Write {
        relationships: Vec<String>,
        /// A file of relationships, one per line (`-` for standard input; `#` and `//` start
        /// comments).
        #[arg(long)]
        file: Option<PathBuf>,
        /// CREATE (fails if one exists) instead of TOUCH (creates or replaces).
        #[arg(long)]
        create: bool,
        /// Transaction metadata, a JSON object (Watch shows it with the write).
        #[arg(long)]
        metadata: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Print the relationships a filter matches: `TYPE[:ID]` or `TYPE:PREFIX*`, then optional
    /// `RELATION` and `SUBJECT_TYPE[:ID][#RELATION]`.
    Read {
        #[arg(required = true, num_args = 1..=3)]
        filter: Vec<String>,
        #[command(flatten)]
        at: At,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete relationships: those given (text form, arguments or `--file`), or with `--filter`
    /// every one a filter matches (as `read`'s). Prints the ZedToken.
    Delete {
        relationships: Vec<String>,
        #[arg(long)]
        file: Option<PathBuf>,
        /// Treat the arguments as a filter (`TYPE[:ID] [RELATION] [SUBJECT]`).
        #[arg(long)]
        filter: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum LookupCommand {
    /// The resources of a type on which a subject has a permission:
    /// `lookup resources document view user:ann`.
    Resources {
        resource_type: String,
        permission: String,
        subject: String,
        /// Request context for caveats, a JSON object.
        #[arg(long)]
        context: Option<String>,
        #[command(flatten)]
        at: At,
        #[command(flatten)]
        remote: Remote,
    },
    /// The subjects of a type (`user`, or `group#member`) with a permission on a resource:
    /// `lookup subjects document:1 view user`.
    Subjects {
        resource: String,
        permission: String,
        subject_type: String,
        #[arg(long)]
        context: Option<String>,
        #[command(flatten)]
        at: At,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List tenants and their key ids.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Drop a tenant and everything it holds.
    Drop {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Add a key to a tenant; prints the key's id and its secret (shown once).
    AddKey {
        tenant: String,
        /// The key's id (the server picks one if not given).
        #[arg(long, default_value = "")]
        id: String,
        /// The key's secret (the server generates one if not given).
        #[arg(long, default_value = "", hide_default_value = true)]
        key: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke one of a tenant's keys by id.
    RevokeKey {
        tenant: String,
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Where a local import goes.
#[derive(clap::Args, Clone, Debug)]
pub struct Local {
    /// Import into this data directory instead of a server (it must not be open in a server).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The tenant, with `--data-dir` (created if missing).
    #[arg(long, default_value = "default", requires = "data_dir")]
    pub tenant: String,
    /// A schema file to write first, with `--data-dir`.
    #[arg(long, requires = "data_dir")]
    pub schema: Option<PathBuf>,
}

/// Exit codes of `check`: 0 allowed, 1 denied, 3 conditional (2 is an error, as for every
/// command).
pub const EXIT_DENIED: u8 = 1;
pub const EXIT_CONDITIONAL: u8 = 3;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

async fn connect(remote: &Remote, admin: bool) -> anyhow::Result<Client> {
    Ok(Client::connect(&remote.endpoint(admin)?).await?)
}

fn json_object(flag: &str, text: Option<&str>) -> anyhow::Result<Map<String, Value>> {
    let Some(text) = text else { return Ok(Map::new()) };
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => anyhow::bail!("`{flag}` must be a JSON object"),
        Err(e) => anyhow::bail!("`{flag}`: {e}"),
    }
}

fn object(text: &str) -> anyhow::Result<ObjectRef> {
    ObjectRef::parse(text).map_err(|e| anyhow::anyhow!("`{text}`: {e}"))
}

fn subject(text: &str) -> anyhow::Result<SubjectRef> {
    SubjectRef::parse(text).map_err(|e| anyhow::anyhow!("`{text}`: {e}"))
}

/// Relationships from arguments and a file's lines, each located when it does not parse.
fn relationships(args: &[String], file: Option<&Path>) -> anyhow::Result<Vec<Relationship>> {
    let mut out = Vec::new();
    for a in args {
        out.push(Relationship::parse(a).map_err(|e| anyhow::anyhow!("`{a}`: {e}"))?);
    }
    if let Some(f) = file {
        for item in RelationshipLines::open(f)? {
            out.push(item?);
        }
    }
    anyhow::ensure!(!out.is_empty(), "no relationships given");
    Ok(out)
}

/// The relationships of a text file (or standard input), one per line, read as they are
/// needed.
struct RelationshipLines {
    name: String,
    lines: crate::text::BoundedLines<Box<dyn BufRead + Send>>,
}

/// The longest relationship line read (with its caveat context), in bytes.
const MAX_RELATIONSHIP_LINE: usize = 1024 * 1024;

impl RelationshipLines {
    fn open(path: &Path) -> anyhow::Result<RelationshipLines> {
        let reader: Box<dyn BufRead + Send> = if path == Path::new("-") {
            Box::new(std::io::BufReader::new(std::io::stdin()))
        } else {
            let f = std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
            Box::new(std::io::BufReader::new(f))
        };
        let name = path.display().to_string();
        Ok(RelationshipLines {
            lines: crate::text::BoundedLines::new(reader, name.clone(), MAX_RELATIONSHIP_LINE),
            name,
        })
    }
}

impl Iterator for RelationshipLines {
    type Item = anyhow::Result<Relationship>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = match self.lines.next_line() {
                Ok(Some(l)) => l,
                Ok(None) => return None,
                Err(e) => return Some(Err(e.into())),
            };
            let text = line.trim();
            if text.is_empty() || text.starts_with('#') || text.starts_with("//") {
                continue;
            }
            let (name, number) = (&self.name, self.lines.number());
            return Some(
                Relationship::parse(text)
                    .map_err(|e| anyhow::anyhow!("{name}:{number}: `{}`: {e}", crate::text::elide(text))),
            );
        }
    }
}

/// `TYPE[:ID]` or `TYPE:PREFIX*`, `[RELATION]`, `[SUBJECT_TYPE[:ID][#RELATION]]`.
fn filter(args: &[String]) -> anyhow::Result<RelationshipFilter> {
    let mut f = RelationshipFilter::default();
    let Some(resource) = args.first() else { anyhow::bail!("a filter needs at least a resource type") };
    match resource.split_once(':') {
        Some((ty, id)) => {
            f.resource_type = Some(ty.to_string());
            match id.strip_suffix('*') {
                Some(prefix) => f.resource_id_prefix = Some(prefix.to_string()),
                None => f.resource_id = Some(id.to_string()),
            }
        }
        None => f.resource_type = Some(resource.clone()),
    }
    if let Some(rel) = args.get(1).filter(|r| !r.is_empty() && *r != "*") {
        f.relation = Some(rel.clone());
    }
    if let Some(s) = args.get(2) {
        let (object, relation) = match s.split_once('#') {
            Some((o, r)) => (o, Some(r.to_string())),
            None => (s.as_str(), None),
        };
        match object.split_once(':') {
            Some((ty, id)) => {
                f.subject_type = Some(ty.to_string());
                f.subject_id = Some(id.to_string());
            }
            None => f.subject_type = Some(object.to_string()),
        }
        if relation.is_some() {
            f.subject_relation = Some(relation);
        }
    }
    anyhow::ensure!(args.len() <= 3, "a filter has at most three parts");
    Ok(f)
}

fn describe(d: &Decision) -> String {
    match d {
        Decision::Has => "allowed".into(),
        Decision::No => "denied".into(),
        Decision::Conditional(m) => format!("conditional (missing context: {})", m.join(", ")),
    }
}

pub fn schema_write(file: &Path, remote: &Remote) -> anyhow::Result<ExitCode> {
    let text = super::read(file)?;
    let token = runtime()?.block_on(async { anyhow::Ok(connect(remote, false).await?.write_schema(&text).await?) })?;
    out!("{token}\n");
    Ok(ExitCode::SUCCESS)
}

pub fn schema_read(remote: &Remote) -> anyhow::Result<ExitCode> {
    let text = runtime()?.block_on(async { anyhow::Ok(connect(remote, false).await?.read_schema().await?) })?;
    out!("{}{}", text, if text.ends_with('\n') { "" } else { "\n" });
    Ok(ExitCode::SUCCESS)
}

pub fn relationship(command: RelationshipCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match command {
        RelationshipCommand::Write { relationships: args, file, create, metadata, remote } => {
            let rels = relationships(&args, file.as_deref())?;
            let metadata = json_object("--metadata", metadata.as_deref())?;
            let updates: Vec<Update> =
                rels.into_iter().map(|r| if create { Update::Create(r) } else { Update::Touch(r) }).collect();
            let token = rt.block_on(async {
                anyhow::Ok(
                    connect(&remote, false).await?.write(&updates, (!metadata.is_empty()).then_some(&metadata)).await?,
                )
            })?;
            out!("{token}\n");
        }
        RelationshipCommand::Read { filter: args, at, remote } => {
            let f = filter(&args)?;
            let at = at.read_at()?;
            rt.block_on(async {
                connect(&remote, false).await?.read(&f, &at, &mut |r| out!("{r}\n")).await?;
                anyhow::Ok(())
            })?;
        }
        RelationshipCommand::Delete { relationships: args, file, filter: by_filter, remote } => {
            if by_filter {
                anyhow::ensure!(file.is_none(), "`--filter` takes the filter as arguments, not `--file`");
                let f = filter(&args)?;
                let (token, n) = rt.block_on(async { anyhow::Ok(connect(&remote, false).await?.delete(&f).await?) })?;
                eprintln!("deleted {n} relationship{}", if n == 1 { "" } else { "s" });
                out!("{token}\n");
            } else {
                let updates: Vec<Update> =
                    relationships(&args, file.as_deref())?.into_iter().map(Update::Delete).collect();
                let token =
                    rt.block_on(async { anyhow::Ok(connect(&remote, false).await?.write(&updates, None).await?) })?;
                out!("{token}\n");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `check RESOURCE PERMISSION SUBJECT` or `check RESOURCE#PERMISSION@SUBJECT`.
pub fn check(args: &[String], context: Option<&str>, json: bool, at: &At, remote: &Remote) -> anyhow::Result<ExitCode> {
    let (resource, permission, subject_text) = match args {
        [one] => {
            let (left, s) =
                one.split_once('@').ok_or_else(|| anyhow::anyhow!("`{one}`: expected RESOURCE#PERMISSION@SUBJECT"))?;
            let (r, p) =
                left.split_once('#').ok_or_else(|| anyhow::anyhow!("`{one}`: expected RESOURCE#PERMISSION@SUBJECT"))?;
            (r.to_string(), p.to_string(), s.to_string())
        }
        [r, p, s] => (r.clone(), p.clone(), s.clone()),
        _ => anyhow::bail!("give RESOURCE PERMISSION SUBJECT, or RESOURCE#PERMISSION@SUBJECT"),
    };
    let req = CheckRequest {
        resource: object(&resource)?,
        permission,
        subject: subject(&subject_text)?,
        context: json_object("--context", context)?,
    };
    let at = at.read_at()?;
    let checked = runtime()?.block_on(async { anyhow::Ok(connect(remote, false).await?.check(&req, &at).await?) })?;
    if json {
        let (answer, missing) = match &checked.decision {
            Decision::Has => ("allowed", Vec::new()),
            Decision::No => ("denied", Vec::new()),
            Decision::Conditional(m) => ("conditional", m.clone()),
        };
        let mut v = Map::new();
        v.insert("answer".into(), answer.into());
        v.insert("checked_at".into(), checked.token.clone().into());
        if !missing.is_empty() {
            v.insert("missing_context".into(), missing.into());
        }
        if let Some(e) = checked.expires_at {
            v.insert("expires_at".into(), e.to_string().into());
        }
        let v = Value::Object(v);
        out!("{v}\n");
    } else {
        let until = checked.expires_at.map(|e| format!(" until {e}")).unwrap_or_default();
        out!("{}{until}\n", describe(&checked.decision));
    }
    Ok(match checked.decision {
        Decision::Has => ExitCode::SUCCESS,
        Decision::No => ExitCode::from(EXIT_DENIED),
        Decision::Conditional(_) => ExitCode::from(EXIT_CONDITIONAL),
    })
}

pub fn lookup(command: LookupCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let print = |what: String, d: Decision| match d {
        Decision::Conditional(m) => out!("{what} (conditional, missing context: {})\n", m.join(", ")),
        _ => out!("{what}\n"),
    };
    match command {
        LookupCommand::Resources { resource_type, permission, subject: s, context, at, remote } => {
            let s = subject(&s)?;
            let ctx = json_object("--context", context.as_deref())?;
            let at = at.read_at()?;
            rt.block_on(async {
                let c = connect(&remote, false).await?;
                c.lookup_resources(&resource_type, &permission, &s, &ctx, &at, &mut |id, d| {
                    print(format!("{resource_type}:{id}"), d)
                })
                .await?;
                anyhow::Ok(())
            })?;
        }
        LookupCommand::Subjects { resource, permission, subject_type, context, at, remote } => {
            let resource = object(&resource)?;
            let (ty, rel) = match subject_type.split_once('#') {
                Some((t, r)) => (t.to_string(), Some(r.to_string())),
                None => (subject_type.clone(), None),
            };
            let ctx = json_object("--context", context.as_deref())?;
            let at = at.read_at()?;
            rt.block_on(async {
                let c = connect(&remote, false).await?;
                c.lookup_subjects(&resource, &permission, &ty, rel.as_deref(), &ctx, &at, &mut |s, d| {
                    print(s.to_string(), d)
                })
                .await?;
                anyhow::Ok(())
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Shows how many relationships have gone by, on a terminal only, at most 10 times a second.
struct Progress {
    on: bool,
    last: std::time::Instant,
    started: std::time::Instant,
}

impl Progress {
    fn new() -> Progress {
        let now = std::time::Instant::now();
        Progress { on: std::io::stderr().is_terminal(), last: now, started: now }
    }

    fn show(&mut self, n: u64, done: bool) {
        if !self.on || (!done && self.last.elapsed() < std::time::Duration::from_millis(100)) {
            return;
        }
        self.last = std::time::Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        eprint!("\r{n} relationships, {:.0}/s{}", n as f64 / secs, if done { "\n" } else { "" });
    }
}

/// `import FILE`: relationships, one per line in SpiceDB's text form, into a server
/// (ImportBulkRelationships, streamed in chunks) or a data directory (`--data-dir`; the
/// directory must not be open in a server). Existing relationships fail the import, as in
/// SpiceDB.
pub fn import(file: &Path, local: Option<&Local>, chunk: Option<usize>, remote: &Remote) -> anyhow::Result<ExitCode> {
    let mut lines = RelationshipLines::open(file)?;
    let mut progress = Progress::new();
    let mut total = 0u64;
    let mut failure: Option<anyhow::Error> = None;
    if let Some(Local { data_dir: Some(dir), tenant, schema }) = local {
        use crate::db::Database;
        use crate::store::Mutation;
        let db = Database::open(dir).with_context(|| format!("cannot open `{}`", dir.display()))?;
        if !db.tenants()?.contains(tenant) {
            db.create_tenant(tenant)?;
        }
        if let Some(s) = schema {
            db.write_schema(tenant, &super::read(s)?)?;
        }
        let most = db.limits().import_chunk.max(1);
        let per_write = chunk.unwrap_or(most).clamp(1, most);
        // A failing chunk keeps its revisions before the failure: count what the tenant holds.
        let held = |db: &Database| {
            db.snapshot(tenant, crate::db::Consistency::FullyConsistent).map_or(0, |s| s.index().relationship_count())
        };
        let before = held(&db);
        let mut load = || -> anyhow::Result<()> {
            loop {
                let mut batch = Vec::with_capacity(per_write);
                for item in lines.by_ref().take(per_write) {
                    batch.push(Mutation::Create(item?));
                }
                if batch.is_empty() {
                    return Ok(());
                }
                let n = batch.len() as u64;
                db.import_chunk(tenant, batch)?;
                total += n;
                progress.show(total, false);
            }
        };
        if let Err(e) = load() {
            total = held(&db).saturating_sub(before) as u64;
            failure = Some(e);
        }
    } else {
        // The file is read as the stream is sent: a bad line ends the stream (the server then
        // loads nothing more) and is reported here.
        let (tx, rx) = std::sync::mpsc::sync_channel::<anyhow::Error>(1);
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = counter.clone();
        let chunk = chunk.unwrap_or(1000).clamp(1, 100_000);
        let chunks = std::iter::from_fn(move || {
            let mut out = Vec::with_capacity(chunk);
            for item in lines.by_ref().take(chunk) {
                match item {
                    Ok(r) => out.push(r),
                    Err(e) => {
                        let _ = tx.try_send(e);
                        return None;
                    }
                }
            }
            seen.fetch_add(out.len() as u64, std::sync::atomic::Ordering::Relaxed);
            (!out.is_empty()).then_some(out)
        });
        let rt = runtime()?;
        let loaded = rt.block_on(async {
            let c = connect(remote, false).await?;
            let import = c.import(chunks);
            tokio::pin!(import);
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
            loop {
                tokio::select! {
                    r = &mut import => break anyhow::Ok(r?),
                    _ = tick.tick() => progress.show(counter.load(std::sync::atomic::Ordering::Relaxed), false),
                }
            }
        });
        if let Ok(e) = rx.try_recv() {
            failure = Some(e);
        }
        total = loaded?;
    }
    progress.show(total, true);
    if let Some(e) = failure {
        return Err(e.context(format!("the import stopped; {total} relationships were loaded")));
    }
    eprintln!("imported {total} relationship{}", if total == 1 { "" } else { "s" });
    Ok(ExitCode::SUCCESS)
}

/// `export`: every relationship of the tenant, one per line in SpiceDB's text form.
pub fn export(remote: &Remote) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        connect(remote, false).await?.export(&mut |r| out!("{r}\n")).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `watch`: one line per update (`TOUCH rel`, `DELETE rel`, `SCHEMA`), each write followed by
/// `# through TOKEN` and its metadata, until interrupted or `--count` writes were shown.
pub fn watch(types: &[String], from: Option<&str>, count: Option<u64>, remote: &Remote) -> anyhow::Result<ExitCode> {
    let mut left = count;
    runtime()?.block_on(async {
        let c = connect(remote, false).await?;
        c.watch(types, from, &mut |w| {
            for u in &w.updates {
                match u {
                    Update::Create(r) => out!("CREATE {r}\n"),
                    Update::Touch(r) => out!("TOUCH {r}\n"),
                    Update::Delete(r) => out!("DELETE {r}\n"),
                }
            }
            if w.schema_updated {
                out!("SCHEMA\n");
            }
            if w.metadata.is_empty() {
                out!("# through {}\n", w.token);
            } else {
                out!("# through {} {}\n", w.token, Value::Object(w.metadata.clone()));
            }
            match &mut left {
                Some(n) => {
                    *n = n.saturating_sub(1);
                    *n > 0
                }
                None => true,
            }
        })
        .await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn tenant(command: TenantCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match command {
        TenantCommand::Create { name, remote } => {
            rt.block_on(async { anyhow::Ok(connect(&remote, true).await?.create_tenant(&name).await?) })?;
            eprintln!("created tenant `{name}`");
        }
        TenantCommand::List { remote } => {
            let tenants = rt.block_on(async { anyhow::Ok(connect(&remote, true).await?.list_tenants().await?) })?;
            for t in tenants {
                let created = t.created_at.map(|c| c.to_string()).unwrap_or_default();
                out!("{}\t{}\tkeys: {}\n", t.name, created, t.keys.join(", "));
            }
        }
        TenantCommand::Drop { name, remote } => {
            rt.block_on(async { anyhow::Ok(connect(&remote, true).await?.drop_tenant(&name).await?) })?;
            eprintln!("dropped tenant `{name}`");
        }
        TenantCommand::AddKey { tenant, id, key, remote } => {
            let (id, secret) =
                rt.block_on(async { anyhow::Ok(connect(&remote, true).await?.add_key(&tenant, &id, &key).await?) })?;
            out!("{id}\t{secret}\n");
        }
        TenantCommand::RevokeKey { tenant, id, remote } => {
            rt.block_on(async { anyhow::Ok(connect(&remote, true).await?.revoke_key(&tenant, &id).await?) })?;
            eprintln!("revoked key `{id}` of tenant `{tenant}`");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `backup FILE --endpoint`: every tenant of a running server (admin key), each read at one
/// revision while the server goes on serving, in the same format as a data directory's backup.
pub fn backup(file: &Path, remote: &Remote) -> anyhow::Result<ExitCode> {
    use crate::server::client::ExportLine;
    let rt = runtime()?;
    let c = rt.block_on(connect(remote, true))?;
    let tenants = rt.block_on(c.list_tenants())?;
    let tokens = super::write_beside(file, &mut |out| {
        let line = |out: &mut dyn std::io::Write, v: Value| -> anyhow::Result<()> {
            std::io::Write::write_fmt(out, format_args!("{v}\n")).context("writing the backup")
        };
        line(out, serde_json::json!({"pemba_backup": 1}))?;
        let mut tokens = Vec::new();
        for t in &tenants {
            line(out, serde_json::json!({"tenant": t.name}))?;
            let mut failed: Option<anyhow::Error> = None;
            let token = rt.block_on(c.export_tenant(&t.name, &mut |l| {
                if failed.is_some() {
                    return;
                }
                let v = match l {
                    ExportLine::Schema(s) if s.is_empty() => serde_json::json!({"schema": null}),
                    ExportLine::Schema(s) => serde_json::json!({"schema": s}),
                    ExportLine::Relationship(r) => serde_json::json!({"relationship": r}),
                    ExportLine::Attributes(o, a) => serde_json::json!({"object": o, "attributes": a}),
                };
                if let Err(e) = line(out, v) {
                    failed = Some(e);
                }
            }))?;
            if let Some(e) = failed {
                return Err(e);
            }
            tokens.push((t.name.clone(), token));
        }
        Ok(tokens)
    })?;
    for (tenant, token) in tokens {
        eprintln!("tenant `{tenant}` at {token}");
    }
    eprintln!("backup written to `{}`", file.display());
    Ok(ExitCode::SUCCESS)
}
