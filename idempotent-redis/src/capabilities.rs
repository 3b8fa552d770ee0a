//! Which plain compare-and-set commands the server has, asked once at
//! connect: `SET .. IFEQ` (Valkey 8.1, Redis 8.4) and `DELIFEQ` (Valkey 9.0).
//!
//! The answer comes from the server's command table (`COMMAND DOCS SET`
//! names an `IFEQ` token, `COMMAND INFO DELIFEQ` describes a command), not
//! from a version number: a fork or a build that has the command says so,
//! one that renamed or removed it does not.
//!
//! Fail safe twice over: a server that lacks them never gets them unless it
//! said it had them, and a server that said so and refuses one all the same
//! (`ERR syntax error` for an unknown `SET` option, `ERR unknown command`:
//! a proxy in front of mixed servers, a primary replaced by an older one
//! after a failover) wrote nothing, so the call runs its script instead and
//! the store stops sending that command for good. A server without them
//! cannot misread them: it refuses them before it executes anything.

use std::sync::atomic::{AtomicBool, Ordering};

use redis::aio::ConnectionLike;
use redis::{RedisError, Value};

/// What the server said it has; shared by the clones of a store.
#[derive(Debug, Default)]
pub(crate) struct Capabilities {
    set_ifeq: AtomicBool,
    delifeq: AtomicBool,
}

impl Capabilities {
    /// Nothing known: the scripts for everything.
    pub(crate) fn none() -> Self {
        Self::default()
    }

    #[cfg(test)]
    pub(crate) fn assumed(set_ifeq: bool, delifeq: bool) -> Self {
        Self {
            set_ifeq: AtomicBool::new(set_ifeq),
            delifeq: AtomicBool::new(delifeq),
        }
    }

    /// Asks the server behind `connection`. A server that does not answer
    /// (an old one without `COMMAND DOCS`, a proxy that blocks `COMMAND`)
    /// has nothing.
    pub(crate) async fn detect<C: ConnectionLike>(connection: &mut C) -> Self {
        let mut pipeline = redis::pipe();
        pipeline
            .ignore_errors()
            .cmd("COMMAND")
            .arg("DOCS")
            .arg("SET")
            .cmd("COMMAND")
            .arg("INFO")
            .arg("DELIFEQ");
        match pipeline.query_async::<Vec<Value>>(connection).await {
            Ok(replies) => Self::from_replies(&replies),
            Err(error) => {
                tracing::debug!(%error, "could not read the server's command table");
                Self::none()
            }
        }
    }

    /// Asks every node of a cluster, masters and replicas (a replica may
    /// be promoted): a command is used only when every node has it.
    #[cfg(feature = "cluster")]
    pub(crate) async fn detect_cluster(
        connection: &mut redis::cluster_async::ClusterConnection,
    ) -> Self {
        use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};

        let mut per_command = Vec::with_capacity(2);
        for command in [
            redis::cmd("COMMAND").arg("DOCS").arg("SET").clone(),
            redis::cmd("COMMAND").arg("INFO").arg("DELIFEQ").clone(),
        ] {
            let every_node = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllNodes, None));
            match connection.route_command(command, every_node).await {
                Ok(Value::Map(replies)) if !replies.is_empty() => per_command.push(replies),
                Ok(reply) => {
                    tracing::debug!(?reply, "could not read the cluster's command tables");
                    return Self::none();
                }
                Err(error) => {
                    tracing::debug!(%error, "could not read the cluster's command tables");
                    return Self::none();
                }
            }
        }
        let [docs, infos] = <[_; 2]>::try_from(per_command).unwrap_or_default();
        Self::of_every_node(&docs, &infos)
    }

    /// From each node's replies, by node: a command counts only when every
    /// node that answered has it, and some did.
    pub(crate) fn of_every_node(docs: &[(Value, Value)], infos: &[(Value, Value)]) -> Self {
        let set_ifeq = !docs.is_empty() && docs.iter().all(|(_, docs)| names_ifeq(docs));
        let delifeq = !infos.is_empty() && infos.iter().all(|(_, info)| describes_a_command(info));
        Self {
            set_ifeq: AtomicBool::new(set_ifeq),
            delifeq: AtomicBool::new(delifeq),
        }
    }

    /// From the replies of `COMMAND DOCS SET` and `COMMAND INFO DELIFEQ`.
    pub(crate) fn from_replies(replies: &[Value]) -> Self {
        let (set_ifeq, delifeq) = match replies {
            [docs, info] => (names_ifeq(docs), describes_a_command(info)),
            _ => (false, false),
        };
        Self {
            set_ifeq: AtomicBool::new(set_ifeq),
            delifeq: AtomicBool::new(delifeq),
        }
    }

    /// Whether a completion and a renewal may be `SET .. IFEQ`.
    pub(crate) fn set_ifeq(&self) -> bool {
        self.set_ifeq.load(Ordering::Relaxed)
    }

    /// Whether a release may be `DELIFEQ`.
    pub(crate) fn delifeq(&self) -> bool {
        self.delifeq.load(Ordering::Relaxed)
    }

    /// Whether either is there, so claims are worth remembering.
    pub(crate) fn any(&self) -> bool {
        self.set_ifeq() || self.delifeq()
    }

    /// After `error` from a plain command: whether it says the server does
    /// not know the command or its `IFEQ` option (then the call falls back to
    /// its script), and if so the store stops sending it.
    pub(crate) fn refused(&self, command: Plain, error: &RedisError) -> bool {
        if !is_unknown_to_the_server(error) {
            return false;
        }
        let flag = match command {
            Plain::SetIfeq => &self.set_ifeq,
            Plain::DelIfeq => &self.delifeq,
        };
        if flag.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                command = command.name(),
                %error,
                "Redis refused a command it listed: using the scripts instead"
            );
        }
        true
    }
}

/// The plain commands, for [`Capabilities::refused`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Plain {
    SetIfeq,
    DelIfeq,
}

impl Plain {
    fn name(self) -> &'static str {
        match self {
            Self::SetIfeq => "SET IFEQ",
            Self::DelIfeq => "DELIFEQ",
        }
    }
}

/// `ERR syntax error` (an option `SET` does not know) or `ERR unknown
/// command`: refused before it ran, so nothing was written.
fn is_unknown_to_the_server(error: &RedisError) -> bool {
    let text = error.to_string();
    (error.code() == Some("ERR") || text.contains("ERR"))
        && (text.contains("syntax error") || text.contains("unknown command"))
}

/// Whether a `COMMAND DOCS SET` reply names the `IFEQ` token anywhere.
fn names_ifeq(reply: &Value) -> bool {
    match reply {
        Value::BulkString(text) => text.eq_ignore_ascii_case(b"IFEQ"),
        Value::SimpleString(text) => text.eq_ignore_ascii_case("IFEQ"),
        Value::Array(items) | Value::Set(items) => items.iter().any(names_ifeq),
        Value::Map(entries) => entries
            .iter()
            .any(|(key, value)| names_ifeq(key) || names_ifeq(value)),
        _ => false,
    }
}

/// Whether a `COMMAND INFO name` reply describes a command: `[nil]` (or an
/// error) when the server has none of that name.
fn describes_a_command(reply: &Value) -> bool {
    match reply {
        Value::Array(items) => matches!(items.as_slice(), [Value::Array(info)] if !info.is_empty()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn an_ifeq_token_deep_in_the_docs_counts() {
        let docs = Value::Array(vec![
            bulk("set"),
            Value::Array(vec![
                bulk("arguments"),
                Value::Array(vec![Value::Array(vec![bulk("token"), bulk("IFEQ")])]),
            ]),
        ]);
        let info = Value::Array(vec![Value::Array(vec![bulk("delifeq"), Value::Int(3)])]);
        let found = Capabilities::from_replies(&[docs, info]);
        assert!(found.set_ifeq() && found.delifeq());
    }

    #[test]
    fn docs_without_ifeq_and_an_unknown_command_count_for_nothing() {
        let docs = Value::Array(vec![
            bulk("set"),
            Value::Array(vec![bulk("NX"), bulk("GET")]),
        ]);
        let info = Value::Array(vec![Value::Nil]);
        let found = Capabilities::from_replies(&[docs, info]);
        assert!(!found.set_ifeq() && !found.delifeq() && !found.any());
        let found = Capabilities::from_replies(&[Value::Nil, Value::Nil]);
        assert!(!found.any());
    }

    #[test]
    fn on_a_cluster_one_node_without_the_commands_turns_them_off() {
        let node = |n: &str| bulk(n);
        let with = Value::Array(vec![bulk("token"), bulk("IFEQ")]);
        let without = Value::Array(vec![bulk("token"), bulk("NX")]);
        let info = Value::Array(vec![Value::Array(vec![bulk("delifeq")])]);
        let unknown = Value::Array(vec![Value::Nil]);
        let all = Capabilities::of_every_node(
            &[(node("a"), with.clone()), (node("b"), with.clone())],
            &[(node("a"), info.clone()), (node("b"), info.clone())],
        );
        assert!(all.set_ifeq() && all.delifeq());
        let mixed = Capabilities::of_every_node(
            &[(node("a"), with.clone()), (node("b"), without)],
            &[(node("a"), info), (node("b"), unknown)],
        );
        assert!(!mixed.set_ifeq() && !mixed.delifeq());
        assert!(!Capabilities::of_every_node(&[], &[]).any());
    }

    #[test]
    fn a_refusal_turns_the_command_off_and_other_errors_do_not() {
        let found = Capabilities::assumed(true, true);
        let other = RedisError::from((redis::ErrorKind::Io, "connection reset"));
        assert!(!found.refused(Plain::SetIfeq, &other));
        assert!(found.set_ifeq());
        let syntax = RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            "ERR syntax error".to_owned(),
        ));
        assert!(found.refused(Plain::SetIfeq, &syntax));
        assert!(!found.set_ifeq() && found.delifeq());
    }
}
