//! `fieldnotes admin …`: teams, users, invitations and tokens, on the
//! database file directly. SQLite's WAL lets this run beside the server;
//! open connections notice a revoked session within
//! [`crate::REVALIDATE_EVERY`].
//!
//! Output: what a script needs on stdout (an id, a link, a token, a generated
//! password), everything else on stderr.

use std::io::{BufRead as _, Write as _};

use anyhow::Context as _;

use crate::auth::{self, DAY_MS, SessionKind, password};
use crate::cli::{
    AdminArgs, AdminCommand, ExportFormat, SessionCommand, TeamCommand, TokenCommand, UserCommand,
};
use crate::storage::{Database, Store};

fn read_password_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// The password to set: from stdin, or generated (and then printed).
fn new_password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    let (password, generated) = if from_stdin {
        (read_password_line()?, false)
    } else {
        (password::generate(), true)
    };
    password::check_strength(&password)?;
    Ok((password, generated))
}

/// `admin export`: the team's CSV files, or its JSON file, into `dir`.
fn export(
    store: &mut Store,
    team: &str,
    format: ExportFormat,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let team = auth::find_team(store.db_mut(), team)?;
    let export = crate::export::read_team(store, team)?;
    let files = match format {
        ExportFormat::Csv => export.csv_files(),
        ExportFormat::Json => vec![(
            "team.json",
            serde_json::to_string_pretty(&export.json(auth::now_ms() as i64))? + "\n",
        )],
    };
    crate::export::write_files(dir, &files)?;
    let notes: usize = export.accounts.iter().map(|a| a.notes.len()).sum();
    eprintln!(
        "exported {} accounts and {notes} notes of {} to {}: {}",
        export.accounts.len(),
        export.team.name,
        dir.display(),
        files
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    if export.not_stored > 0 {
        eprintln!(
            "{} accounts in the team's list are not on the server yet (a phone has not synced them)",
            export.not_stored
        );
    }
    if export.refused > 0 {
        eprintln!(
            "{} entries of the team's list name documents that are not this team's accounts: left out",
            export.refused
        );
    }
    Ok(())
}

pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    if let AdminCommand::Migrate { from, to } = &args.command {
        let (from, to) = (Database::parse(from), Database::parse(to));
        if let Database::Sqlite(path) = &from
            && !path.is_file()
        {
            anyhow::bail!("there is no database at {}", path.display());
        }
        let copied = crate::migrate::migrate(&from, &to)
            .with_context(|| format!("cannot copy {} to {}", from.describe(), to.describe()))?;
        for (table, rows) in &copied.rows {
            eprintln!("{table}: {rows} rows copied");
        }
        eprintln!("chunks: {} copied", copied.chunks);
        return Ok(());
    }
    if let AdminCommand::Backup { to, force } = &args.command {
        let source = match args.database.as_deref().map(Database::parse) {
            Some(Database::Postgres(url)) => {
                anyhow::bail!("{}", crate::backup::pg_dump_hint(&url, to));
            }
            Some(Database::Sqlite(path)) => path,
            Some(Database::Memory) | None => args.data_dir.join(crate::DATABASE_FILE),
        };
        let report = crate::backup::backup(&source, to, *force)?;
        eprintln!("{}", report.describe());
        return Ok(());
    }
    let database = match &args.database {
        Some(url) => Database::parse(url),
        None => {
            if !args.data_dir.is_dir() {
                std::fs::create_dir_all(&args.data_dir).with_context(|| {
                    format!(
                        "cannot create the data directory {}",
                        args.data_dir.display()
                    )
                })?;
            }
            Database::Sqlite(args.data_dir.join(crate::DATABASE_FILE))
        }
    };
    let mut store = Store::open_database(&database)
        .with_context(|| format!("cannot open the database {}", database.describe()))?;
    if let AdminCommand::Export { team, format, out } = &args.command {
        return export(&mut store, team, *format, out);
    }
    let connection = store.db_mut();
    let mut out = std::io::stdout().lock();
    let base = args.public_url.trim_end_matches('/');
    match args.command {
        AdminCommand::Team(TeamCommand::Create { name }) => {
            let team = auth::create_team(connection, &name)?;
            writeln!(out, "{}", team.id)?;
            eprintln!("created team {:?}", team.name);
        }
        AdminCommand::Team(TeamCommand::List) => {
            for (team, members) in auth::list_teams(connection)? {
                writeln!(out, "{}\t{}\t{} members", team.id, team.name, members)?;
            }
        }
        AdminCommand::User(UserCommand::Create {
            email,
            name,
            team,
            role,
            admin,
            password_stdin,
        }) => {
            let team = auth::find_team(connection, &team)?;
            let (password, generated) = new_password(password_stdin)?;
            let hash = password::hash(&password)?;
            let user = connection.transaction(|tx| {
                let user = auth::create_user(tx, &email, &name, &hash, admin)?;
                auth::set_membership(tx, &user.id, &team.id, role)?;
                Ok::<_, auth::AuthError>(user)
            })?;
            eprintln!(
                "created {} ({}) as {} of {}{}",
                user.email,
                user.name,
                role.as_str(),
                team.name,
                if admin { ", administrator" } else { "" }
            );
            if generated {
                writeln!(out, "{password}")?;
                eprintln!("give them the password above; it is not shown again");
            }
        }
        AdminCommand::User(UserCommand::List) => {
            for (user, teams) in auth::list_users(connection)? {
                let teams: Vec<String> = teams
                    .iter()
                    .map(|t| format!("{} ({})", t.name, t.role.as_str()))
                    .collect();
                writeln!(
                    out,
                    "{}\t{}\t{}{}{}",
                    user.email,
                    user.name,
                    teams.join(", "),
                    if user.is_admin { "\tadmin" } else { "" },
                    if user.disabled { "\tdisabled" } else { "" },
                )?;
            }
        }
        AdminCommand::User(UserCommand::AddToTeam { email, team, role }) => {
            let team = auth::find_team(connection, &team)?;
            let (user, _) = auth::user_by_email(connection, &email)?
                .ok_or_else(|| auth::AuthError::NoSuchUser(email.clone()))?;
            auth::set_membership(connection, &user.id, &team.id, role)?;
            eprintln!("{} is now {} of {}", user.email, role.as_str(), team.name);
        }
        AdminCommand::User(UserCommand::RemoveFromTeam { email, team }) => {
            let team = auth::find_team(connection, &team)?;
            let (user, _) = auth::user_by_email(connection, &email)?
                .ok_or_else(|| auth::AuthError::NoSuchUser(email.clone()))?;
            if !auth::remove_membership(connection, &user.id, &team.id)? {
                anyhow::bail!(
                    "{} is not in {}; nothing changed (`fieldnotes admin user list` shows their teams)",
                    user.email,
                    team.name
                );
            }
            eprintln!(
                "{} is no longer in {}; their open connections to it close within seconds",
                user.email, team.name
            );
        }
        AdminCommand::User(UserCommand::ResetPassword {
            email,
            password_stdin,
        }) => {
            let (password, generated) = new_password(password_stdin)?;
            let hash = password::hash(&password)?;
            let user = auth::set_password(connection, &email, &hash)?;
            eprintln!(
                "new password set for {}; they are signed out everywhere",
                user.email
            );
            if generated {
                writeln!(out, "{password}")?;
            }
        }
        AdminCommand::User(UserCommand::Disable { email }) => {
            let user = auth::set_disabled(connection, &email, true)?;
            eprintln!("{} is disabled and signed out everywhere", user.email);
        }
        AdminCommand::User(UserCommand::Enable { email }) => {
            let user = auth::set_disabled(connection, &email, false)?;
            eprintln!("{} can sign in again", user.email);
        }
        AdminCommand::Invite {
            team,
            role,
            email,
            days,
        } => {
            let team = auth::find_team(connection, &team)?;
            let token = auth::create_invitation(
                connection,
                &team,
                role,
                email.as_deref(),
                days.max(1) * DAY_MS,
            )?;
            writeln!(out, "{base}/#/invite/{token}")?;
            eprintln!(
                "invitation to {} as {}, valid {} days, usable once",
                team.name,
                role.as_str(),
                days.max(1)
            );
        }
        AdminCommand::Token(TokenCommand::Create { email, days, label }) => {
            let (user, _) = auth::user_by_email(connection, &email)?
                .ok_or_else(|| auth::AuthError::NoSuchUser(email.clone()))?;
            if user.disabled {
                anyhow::bail!("{} is disabled; enable them first", user.email);
            }
            let (token, info) = auth::create_session(
                connection,
                &user,
                SessionKind::Token,
                days * DAY_MS,
                label.as_deref(),
            )?;
            writeln!(out, "{token}")?;
            eprintln!(
                "token for {} in {} team(s); send it as `Authorization: Bearer <token>`",
                user.email,
                info.teams.len()
            );
        }
        AdminCommand::Session(SessionCommand::Revoke { email }) => {
            let count = auth::revoke_sessions_of(connection, &email)?;
            eprintln!(
                "revoked {count} session(s) of {}",
                email.trim().to_lowercase()
            );
        }
        AdminCommand::Adopt { team } => {
            let team = auth::find_team(connection, &team)?;
            let count = auth::adopt_unowned(connection, &team)?;
            eprintln!("{count} document(s) now belong to {}", team.name);
        }
        AdminCommand::Migrate { .. }
        | AdminCommand::Backup { .. }
        | AdminCommand::Export { .. } => {
            unreachable!("handled before the database is opened")
        }
    }
    out.flush()?;
    Ok(())
}
