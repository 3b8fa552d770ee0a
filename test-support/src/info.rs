//! Parsing the text of `INFO` replies.

use std::collections::BTreeMap;

/// The value of `field` in an `INFO` reply (`field:value` lines).
pub(crate) fn field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .filter_map(|line| line.trim_end().split_once(':'))
        .find(|(name, _)| *name == field)
        .map(|(_, value)| value)
}

/// Calls per command from `INFO commandstats`, whose lines read
/// `cmdstat_<name>:calls=N,usec=...`. Names are kept as Redis spells them, including
/// subcommands such as `config|resetstat`.
pub(crate) fn command_calls(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| line.trim_end().strip_prefix("cmdstat_"))
        .filter_map(|line| {
            let (name, stats) = line.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|stat| stat.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMANDSTATS: &str = "# Commandstats\r\n\
        cmdstat_set:calls=3,usec=12,usec_per_call=4.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_evalsha:calls=17,usec=100,usec_per_call=5.88,rejected_calls=0,failed_calls=1\r\n\
        cmdstat_config|resetstat:calls=1,usec=5,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n";

    #[test]
    fn reads_calls_per_command() {
        let calls = command_calls(COMMANDSTATS);
        assert_eq!(calls.get("set"), Some(&3));
        assert_eq!(calls.get("evalsha"), Some(&17));
        assert_eq!(calls.get("config|resetstat"), Some(&1));
        assert_eq!(calls.len(), 3);
    }

    #[test]
    fn reads_a_field() {
        let info = "# Server\r\nredis_version:7.0.15\r\nprocess_id:4242\r\n";
        assert_eq!(field(info, "process_id"), Some("4242"));
        assert_eq!(field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(field(info, "run_id"), None);
    }
}
