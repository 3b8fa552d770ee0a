//! Running the server as an unprivileged OS user.
//!
//! `initdb` and `postgres` refuse to run as root (a server compromised through
//! SQL would own the machine). Tests in CI run as root, so the server's
//! programs then run as the `postgres` account (created by Debian's package)
//! through `setpriv`, which switches user and then `exec`s: the process it
//! starts is the server itself, so its pid is the postmaster's (`runuser` and
//! `su` would stay in between as a parent).

use std::path::Path;
use std::process::Command;

/// The account the server runs as when the tests run as root.
const SERVER_ACCOUNT: &str = "postgres";

/// Who runs the server programs.
#[derive(Debug, Clone)]
pub(crate) enum Runner {
    /// The tests' own user, who is not root.
    CurrentUser,
    /// The tests run as root: switch to this uid and gid first.
    Account { uid: u32, gid: u32 },
}

impl Runner {
    pub(crate) fn detect() -> Runner {
        if id(&["-u"]) != Some(0) {
            return Runner::CurrentUser;
        }
        match (id(&["-u", SERVER_ACCOUNT]), id(&["-g", SERVER_ACCOUNT])) {
            (Some(uid), Some(gid)) => Runner::Account { uid, gid },
            _ => panic!(
                "the tests run as root, and PostgreSQL refuses to run as root, but there is no \
                 `{SERVER_ACCOUNT}` account to run it as: install the server with \
                 `apt-get install -y postgresql` (which creates the account), or run the tests \
                 as another user"
            ),
        }
    }

    /// Gives `dir` to the server's account, so it can create its data there.
    pub(crate) fn hand_over(&self, dir: &Path) {
        if let Runner::Account { uid, gid } = self {
            std::os::unix::fs::chown(dir, Some(*uid), Some(*gid)).unwrap_or_else(|error| {
                panic!(
                    "cannot give {} to the {SERVER_ACCOUNT} account: {error}",
                    dir.display()
                )
            });
        }
    }

    /// The command line that runs `program` with `args` as this runner.
    pub(crate) fn command_line(&self, program: &Path, args: &[String]) -> Vec<String> {
        let mut line = Vec::new();
        if let Runner::Account { uid, gid } = self {
            line.extend([
                "setpriv".to_owned(),
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".to_owned(),
                "--".to_owned(),
            ]);
        }
        line.push(program.display().to_string());
        line.extend(args.iter().cloned());
        line
    }

    /// A [`Command`] that runs `program` with `args` as this runner.
    pub(crate) fn command(&self, program: &Path, args: &[String]) -> Command {
        let line = self.command_line(program, args);
        let mut command = Command::new(&line[0]);
        command.args(&line[1..]);
        command
    }
}

/// `id ARGS` as a number, e.g. the effective uid for `-u`.
fn id(args: &[&str]) -> Option<u32> {
    let output = Command::new("id").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_runner_switches_user_before_the_program() {
        let runner = Runner::Account { uid: 101, gid: 104 };
        let line = runner.command_line(Path::new("/bin/postgres"), &["-D".into(), "x".into()]);
        assert_eq!(
            line,
            [
                "setpriv",
                "--reuid=101",
                "--regid=104",
                "--clear-groups",
                "--",
                "/bin/postgres",
                "-D",
                "x"
            ]
        );
    }

    #[test]
    fn the_current_user_runs_the_program_itself() {
        let line = Runner::CurrentUser.command_line(Path::new("/bin/initdb"), &[]);
        assert_eq!(line, ["/bin/initdb"]);
    }
}
