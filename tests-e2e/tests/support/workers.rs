//! The worker processes of the soaks: one program started once per argument list, its
//! stdout and stderr drained as they go (a full pipe would block a worker), killed when
//! dropped (a failed test).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};

/// The threads draining one worker's stdout (its lines) and stderr.
type Readers = (JoinHandle<Vec<String>>, JoinHandle<String>);

/// Running workers, in the order they were started.
pub struct Workers {
    children: Vec<Child>,
    statuses: Vec<Option<ExitStatus>>,
    readers: Vec<Option<Readers>>,
}

impl Workers {
    /// Starts `program` once per entry of `args`.
    ///
    /// # Panics
    ///
    /// When a process cannot be started.
    pub fn spawn(program: &str, args: impl IntoIterator<Item = Vec<String>>) -> Workers {
        let mut workers = Workers {
            children: Vec::new(),
            statuses: Vec::new(),
            readers: Vec::new(),
        };
        for args in args {
            let mut child = Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|error| panic!("cannot start {program}: {error}"));
            let stdout = child.stdout.take().expect("piped stdout");
            let mut stderr = child.stderr.take().expect("piped stderr");
            workers.readers.push(Some((
                thread::spawn(move || {
                    BufReader::new(stdout)
                        .lines()
                        .map(|line| line.unwrap_or_else(|error| format!("UNREADABLE {error}")))
                        .collect()
                }),
                thread::spawn(move || {
                    let mut bytes = Vec::new();
                    let _ = stderr.read_to_end(&mut bytes);
                    String::from_utf8_lossy(&bytes).into_owned()
                }),
            )));
            workers.children.push(child);
            workers.statuses.push(None);
        }
        workers
    }

    /// Whether every worker has exited.
    pub fn all_exited(&mut self) -> bool {
        for (child, status) in self.children.iter_mut().zip(&mut self.statuses) {
            if status.is_none() {
                *status = child.try_wait().expect("poll a worker");
            }
        }
        self.statuses.iter().all(Option::is_some)
    }

    /// Kills the workers still running and reaps them.
    pub fn kill_all(&mut self) {
        for (child, status) in self.children.iter_mut().zip(&mut self.statuses) {
            if status.is_none() {
                let _ = child.kill();
                *status = child.wait().ok();
            }
        }
    }

    /// How each worker ended; `None` for one still running (or not reaped).
    pub fn statuses(&self) -> &[Option<ExitStatus>] {
        &self.statuses
    }

    /// Each worker's stdout lines and stderr, once all have exited.
    pub fn outputs(&mut self) -> Vec<(Vec<String>, String)> {
        self.readers
            .iter_mut()
            .map(|readers| {
                readers
                    .take()
                    .map_or_else(Default::default, |(stdout, stderr)| {
                        (
                            stdout.join().expect("stdout reader"),
                            stderr.join().expect("stderr reader"),
                        )
                    })
            })
            .collect()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.kill_all();
    }
}
