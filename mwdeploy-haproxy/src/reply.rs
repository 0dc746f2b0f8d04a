//! HAProxy's answers to commands that change state.
//!
//! HAProxy answers errors as text, never with a status: a `set server` command that
//! worked answers with an empty line, anything else is a refusal in HAProxy's words.

use crate::error::Refusal;

/// Reads the answer to a command whose success is an empty reply (`set server ...`).
///
/// `Ok(())` for an empty (or blank) reply; otherwise the reply, trimmed, classified.
///
/// ```
/// use mwdeploy_haproxy::reply::check_empty;
/// use mwdeploy_haproxy::Refusal;
/// assert!(check_empty("\n").is_ok());
/// assert_eq!(check_empty("No such server.\n\n").unwrap_err().1, Refusal::NoSuchServer);
/// ```
pub fn check_empty(reply: &str) -> Result<(), (String, Refusal)> {
    let words = reply.trim();
    if words.is_empty() {
        return Ok(());
    }
    Err((words.to_string(), classify(words)))
}

/// Classifies a refusal by its first words.
pub fn classify(reply: &str) -> Refusal {
    let r = reply.trim_start();
    if r.starts_with("No such server") {
        Refusal::NoSuchServer
    } else if r.starts_with("No such backend")
        || r.starts_with("No such proxy")
        || r.starts_with("Can't find backend")
    {
        Refusal::NoSuchBackend
    } else if r.starts_with("Unknown command") {
        Refusal::UnknownCommand
    } else if r.starts_with("Permission denied") {
        Refusal::PermissionDenied
    } else {
        Refusal::Other
    }
}

/// Whether the answer to a `show` command is a refusal rather than data: HAProxy's
/// error texts start with one of a few known phrases.
pub fn refusal_of_show(reply: &str) -> Option<Refusal> {
    match classify(reply) {
        Refusal::Other => None,
        r => Some(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_is_success_and_haproxy_words_are_classified() {
        assert!(check_empty("").is_ok());
        assert!(check_empty("\n").is_ok());
        assert!(check_empty("\n\n").is_ok());
        let cases = [
            ("No such server.\n\n", Refusal::NoSuchServer),
            ("No such backend.\n\n", Refusal::NoSuchBackend),
            ("No such proxy.\n\n", Refusal::NoSuchBackend),
            ("Can't find backend.\n", Refusal::NoSuchBackend),
            ("Permission denied\n\n", Refusal::PermissionDenied),
            (
                "Unknown command, but maybe one of the following ones is a better match:\n  show fd",
                Refusal::UnknownCommand,
            ),
            (
                "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n",
                Refusal::Other,
            ),
        ];
        for (reply, want) in cases {
            let (words, got) = check_empty(reply).unwrap_err();
            assert_eq!(got, want, "{reply:?}");
            assert_eq!(words, reply.trim());
        }
        assert_eq!(refusal_of_show("# pxname,svname\n"), None);
        assert_eq!(
            refusal_of_show("Permission denied\n"),
            Some(Refusal::PermissionDenied)
        );
    }

    proptest! {
        #[test]
        fn any_reply_is_read_without_panic(reply in any::<String>()) {
            match check_empty(&reply) {
                Ok(()) => prop_assert!(reply.trim().is_empty()),
                Err((words, _)) => prop_assert_eq!(words, reply.trim()),
            }
        }

        #[test]
        fn a_reply_with_words_is_never_success(
            pre in "[ \n\t]{0,3}",
            words in "[!-~][ -~]{0,40}",
        ) {
            let reply = format!("{pre}{words}\n");
            prop_assert!(check_empty(&reply).is_err());
        }
    }
}
