//! Parsers for `show stat` (CSV) and `show servers state`.
//!
//! Both are total: any input gives rows or a [`ParseError`], never a panic. Columns
//! are looked up by their header name, never by position, so a HAProxy that adds or
//! moves columns is read the same.

use std::collections::HashMap;
use std::fmt;

use mwdeploy_core::PoolState;
use serde::Serialize;

/// Input that is not what HAProxy prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {detail}")]
pub struct ParseError {
    /// 1-based line of the input.
    pub line: usize,
    /// What was wrong.
    pub detail: String,
}

fn err(line: usize, detail: impl Into<String>) -> ParseError {
    ParseError {
        line,
        detail: detail.into(),
    }
}

/// What a `show stat` row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    /// A frontend (`svname` `FRONTEND`, type 0).
    Frontend,
    /// A backend as a whole (`svname` `BACKEND`, type 1).
    Backend,
    /// A server of a backend (type 2).
    Server,
    /// A listener of a frontend (type 3).
    Listener,
}

/// A server's status in HAProxy's words, by its first word (`UP 1/3` is [`Status::Up`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// `UP`, possibly going down (`UP 1/3`).
    Up,
    /// `DOWN`, possibly going up (`DOWN 1/3`).
    Down,
    /// `MAINT`, `MAINT (via b/s)`, `MAINT (resolution)`.
    Maint,
    /// `DRAIN`: no new sessions.
    Drain,
    /// `NOLB`: up, but takes no new load-balanced traffic.
    NoLb,
    /// `no check`: the server has no health check and counts as up.
    NoCheck,
    /// Any other word (frontends say `OPEN`).
    Other,
}

impl Status {
    /// Reads the first word of a status field.
    ///
    /// ```
    /// use mwdeploy_haproxy::stat::Status;
    /// assert_eq!(Status::parse("UP 1/3"), Status::Up);
    /// assert_eq!(Status::parse("MAINT (via mediawiki/mw1)"), Status::Maint);
    /// assert_eq!(Status::parse("no check"), Status::NoCheck);
    /// ```
    pub fn parse(text: &str) -> Status {
        let mut words = text.split_whitespace();
        match words.next().unwrap_or("") {
            "UP" => Status::Up,
            "DOWN" => Status::Down,
            "MAINT" => Status::Maint,
            "DRAIN" => Status::Drain,
            "NOLB" => Status::NoLb,
            "no" if words.next() == Some("check") => Status::NoCheck,
            _ => Status::Other,
        }
    }

    /// The pool state this status means (an unknown word counts as not serving).
    pub fn pool_state(self) -> PoolState {
        match self {
            Status::Up | Status::NoCheck => PoolState::Up,
            Status::Drain | Status::NoLb => PoolState::Drain,
            Status::Maint => PoolState::Maint,
            Status::Down | Status::Other => PoolState::Down,
        }
    }
}

/// One row of `show stat`, with the fields mwdeploy reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatRow {
    /// `pxname`: the frontend or backend.
    pub proxy: String,
    /// `svname`: the server (or `FRONTEND` / `BACKEND`).
    pub name: String,
    /// What the row describes.
    pub kind: RowKind,
    /// `status`, as HAProxy wrote it (`UP 1/3`).
    pub status: String,
    /// `scur`: current sessions.
    pub sessions: u64,
    /// `qcur`: requests queued for it (0 when the column is absent or empty).
    pub queued: u64,
    /// `check_status` (`L7OK`, `L4CON`), when a check has a result.
    pub check_status: Option<String>,
    /// `check_desc`, else `last_chk`: the check's result in words.
    pub check_desc: Option<String>,
    /// `check_health`, `check_rise`, `check_fall`, when the server has a check.
    pub check_health: Option<(u32, u32, u32)>,
}

impl StatRow {
    /// The status, by its first word.
    pub fn status_word(&self) -> Status {
        Status::parse(&self.status)
    }

    /// The last check in words: `L4CON Connection refused`, or `none`.
    pub fn check_text(&self) -> String {
        match (&self.check_status, &self.check_desc) {
            (Some(s), Some(d)) => format!("{s} {d}"),
            (Some(s), None) => s.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => "none".to_string(),
        }
    }
}

/// Splits one CSV line. Fields may be quoted with `"` (a `""` inside is one `"`).
fn split_csv(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    let mut field = String::new();
    let mut at_start = true;
    loop {
        match chars.next() {
            None => {
                fields.push(std::mem::take(&mut field));
                return Ok(fields);
            }
            Some(',') => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
            }
            Some('"') if at_start => {
                loop {
                    match chars.next() {
                        None => return Err("a quoted field is not closed"),
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => field.push(c),
                    }
                }
                match chars.peek() {
                    None | Some(',') => {}
                    Some(_) => return Err("text after a closing quote"),
                }
                at_start = false;
            }
            Some(c) => {
                field.push(c);
                at_start = false;
            }
        }
    }
}

/// Column positions, looked up by header name.
struct Columns(HashMap<String, usize>);

impl Columns {
    fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut map = HashMap::new();
        for (i, name) in names.into_iter().enumerate() {
            let name = name.trim();
            if !name.is_empty() {
                map.entry(name.to_string()).or_insert(i);
            }
        }
        Columns(map)
    }

    fn require(&self, name: &str, header_line: usize) -> Result<usize, ParseError> {
        self.0
            .get(name)
            .copied()
            .ok_or_else(|| err(header_line, format!("the header has no column {name:?}")))
    }

    fn get(&self, name: &str) -> Option<usize> {
        self.0.get(name).copied()
    }
}

fn field<'a>(row: &'a [String], at: usize, name: &str, line: usize) -> Result<&'a str, ParseError> {
    row.get(at).map(String::as_str).ok_or_else(|| {
        err(
            line,
            format!("the row has no field {name:?} ({} fields)", row.len()),
        )
    })
}

fn optional(row: &[String], at: Option<usize>) -> Option<&str> {
    at.and_then(|i| row.get(i))
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
}

fn number(text: &str, name: &str, line: usize) -> Result<u64, ParseError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(0);
    }
    t.parse()
        .map_err(|_| err(line, format!("{name} is {t:?}, not a number")))
}

fn small(text: Option<&str>) -> Option<u32> {
    text.and_then(|t| t.parse().ok())
}

/// Parses the answer to `show stat` (any of its filtered forms).
///
/// The first non-empty line is the header, `# pxname,svname,...`; every other non-empty
/// line is a row. Required columns: `pxname`, `svname`, `status`, `scur`.
///
/// ```
/// use mwdeploy_haproxy::stat::{parse_show_stat, RowKind, Status};
/// let text = "# pxname,svname,scur,status,type,\nmediawiki,mw1,2,UP 1/3,2,\n";
/// let rows = parse_show_stat(text).unwrap();
/// assert_eq!(rows[0].kind, RowKind::Server);
/// assert_eq!(rows[0].sessions, 2);
/// assert_eq!(rows[0].status_word(), Status::Up);
/// assert!(parse_show_stat("Unknown command").is_err());
/// ```
pub fn parse_show_stat(text: &str) -> Result<Vec<StatRow>, ParseError> {
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.trim().is_empty());
    let (header_line, header) = lines
        .next()
        .ok_or_else(|| err(1, "empty answer: no header line"))?;
    let names = header
        .strip_prefix("# ")
        .ok_or_else(|| err(header_line, "the header line does not start with \"# \""))?;
    let names = split_csv(names).map_err(|e| err(header_line, e))?;
    let cols = Columns::new(names.iter().map(String::as_str));
    let pxname = cols.require("pxname", header_line)?;
    let svname = cols.require("svname", header_line)?;
    let status = cols.require("status", header_line)?;
    let scur = cols.require("scur", header_line)?;
    let (qcur, kind_col) = (cols.get("qcur"), cols.get("type"));
    let (check_status, check_desc, last_chk) = (
        cols.get("check_status"),
        cols.get("check_desc"),
        cols.get("last_chk"),
    );
    let (health, rise, fall) = (
        cols.get("check_health"),
        cols.get("check_rise"),
        cols.get("check_fall"),
    );

    let mut rows = Vec::new();
    for (line, text) in lines {
        if text.starts_with("# ") {
            return Err(err(line, "a second header line"));
        }
        let row = split_csv(text).map_err(|e| err(line, e))?;
        let proxy = field(&row, pxname, "pxname", line)?.to_string();
        let name = field(&row, svname, "svname", line)?.to_string();
        if proxy.is_empty() || name.is_empty() {
            return Err(err(line, "empty pxname or svname"));
        }
        let kind = match optional(&row, kind_col) {
            Some("0") => RowKind::Frontend,
            Some("1") => RowKind::Backend,
            Some("2") => RowKind::Server,
            Some("3") => RowKind::Listener,
            Some(other) => return Err(err(line, format!("unknown row type {other:?}"))),
            None => match name.as_str() {
                "FRONTEND" => RowKind::Frontend,
                "BACKEND" => RowKind::Backend,
                _ => RowKind::Server,
            },
        };
        let check_health = match (
            small(optional(&row, health)),
            small(optional(&row, rise)),
            small(optional(&row, fall)),
        ) {
            (Some(h), Some(r), Some(f)) => Some((h, r, f)),
            _ => None,
        };
        rows.push(StatRow {
            proxy,
            name,
            kind,
            status: field(&row, status, "status", line)?.trim().to_string(),
            sessions: number(field(&row, scur, "scur", line)?, "scur", line)?,
            queued: match qcur.and_then(|i| row.get(i)) {
                Some(t) => number(t, "qcur", line)?,
                None => 0,
            },
            check_status: optional(&row, check_status).map(str::to_string),
            check_desc: optional(&row, check_desc)
                .or_else(|| optional(&row, last_chk))
                .map(str::to_string),
            check_health,
        });
    }
    Ok(rows)
}

/// A server's administrative state (what operators and mwdeploy set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminState {
    /// Neither drained nor in maintenance.
    Ready,
    /// Drained: no new sessions.
    Drain,
    /// In maintenance (forced, inherited, configured, or by DNS resolution).
    Maint,
}

impl AdminState {
    /// From `srv_admin_state` bits: any maintenance bit wins over drain.
    pub fn from_bits(bits: u32) -> AdminState {
        // FMAINT 0x01, IMAINT 0x02, CMAINT 0x04, RMAINT 0x20, HMAINT 0x40; FDRAIN 0x08, IDRAIN 0x10.
        if bits & (0x01 | 0x02 | 0x04 | 0x20 | 0x40) != 0 {
            AdminState::Maint
        } else if bits & (0x08 | 0x10) != 0 {
            AdminState::Drain
        } else {
            AdminState::Ready
        }
    }
}

impl fmt::Display for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        })
    }
}

/// A server's operational state (what its health checks decided).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationalState {
    /// Stopped: down.
    Down,
    /// Starting (slow start).
    Starting,
    /// Running: up.
    Up,
    /// Stopping: up but soft-stopped.
    Stopping,
}

impl fmt::Display for OperationalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OperationalState::Down => "down",
            OperationalState::Starting => "starting",
            OperationalState::Up => "up",
            OperationalState::Stopping => "stopping",
        })
    }
}

/// One row of `show servers state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerStateRow {
    /// `be_name`.
    pub backend: String,
    /// `srv_name`.
    pub server: String,
    /// From `srv_op_state`.
    pub operational: OperationalState,
    /// From `srv_admin_state`.
    pub admin: AdminState,
    /// `srv_admin_state` as HAProxy wrote it.
    pub admin_bits: u32,
    /// Whether a health check is configured and enabled (`srv_check_state`; paused in
    /// maintenance counts as enabled).
    pub check_enabled: bool,
}

/// Parses the answer to `show servers state [backend]`.
///
/// A version line (`1`), a header `# be_id be_name srv_id srv_name ...`, then one row
/// per server, fields separated by spaces. Required columns: `be_name`, `srv_name`,
/// `srv_op_state`, `srv_admin_state`.
///
/// ```
/// use mwdeploy_haproxy::stat::{parse_servers_state, AdminState, OperationalState};
/// let text = "1\n# be_id be_name srv_id srv_name srv_op_state srv_admin_state srv_check_state\n\
///             3 mediawiki 1 mw1 2 8 6\n";
/// let rows = parse_servers_state(text).unwrap();
/// assert_eq!(rows[0].admin, AdminState::Drain);
/// assert_eq!(rows[0].operational, OperationalState::Up);
/// assert!(rows[0].check_enabled);
/// ```
pub fn parse_servers_state(text: &str) -> Result<Vec<ServerStateRow>, ParseError> {
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let Some((vline, version)) = lines.next() else {
        return Ok(Vec::new());
    };
    if version != "1" {
        return Err(err(vline, format!("unknown format version {version:?}")));
    }
    let Some((header_line, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let names = header
        .strip_prefix('#')
        .ok_or_else(|| err(header_line, "the header line does not start with \"#\""))?;
    let cols = Columns::new(names.split_whitespace());
    let be_name = cols.require("be_name", header_line)?;
    let srv_name = cols.require("srv_name", header_line)?;
    let op = cols.require("srv_op_state", header_line)?;
    let admin = cols.require("srv_admin_state", header_line)?;
    let check = cols.get("srv_check_state");

    let mut rows = Vec::new();
    for (line, text) in lines {
        let row: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        let operational = match field(&row, op, "srv_op_state", line)? {
            "0" => OperationalState::Down,
            "1" => OperationalState::Starting,
            "2" => OperationalState::Up,
            "3" => OperationalState::Stopping,
            other => return Err(err(line, format!("unknown srv_op_state {other:?}"))),
        };
        let bits_text = field(&row, admin, "srv_admin_state", line)?;
        let admin_bits: u32 = bits_text.parse().map_err(|_| {
            err(
                line,
                format!("srv_admin_state {bits_text:?} is not a number"),
            )
        })?;
        let check_enabled = match check.and_then(|i| row.get(i)) {
            Some(t) => {
                let bits: u32 = t
                    .parse()
                    .map_err(|_| err(line, format!("srv_check_state {t:?} is not a number")))?;
                // CHK_ST_CONFIGURED 0x02 and CHK_ST_ENABLED 0x04.
                bits & 0x06 == 0x06
            }
            None => false,
        };
        rows.push(ServerStateRow {
            backend: field(&row, be_name, "be_name", line)?.to_string(),
            server: field(&row, srv_name, "srv_name", line)?.to_string(),
            operational,
            admin: AdminState::from_bits(admin_bits),
            admin_bits,
            check_enabled,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What HAProxy 2.6 printed for `show stat -1 6 -1` (columns cut for length, the
    /// order kept).
    const STAT_26: &str = "\
# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,
mediawiki,mw1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,1,0,1,1,1,0,,1,3,1,,0,,2,0,,0,L7OK,200,1,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 check passed,,3,2,4,
mediawiki,mw2,0,0,3,3,,3,0,0,,0,,0,0,0,0,DOWN 1/3,1,1,0,3,3,96,0,,1,3,2,,0,,2,0,,0,L4CON,,0,0,0,0,0,0,0,,,,0,0,0,,,,,-1,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,3,2,1,
mediawiki,mw3,0,0,0,0,,0,0,0,,0,,0,0,0,0,no check,1,1,0,,,14,,,1,3,3,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,
mediawiki,mw4,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT (via api/mw4),1,1,0,,,14,,,1,3,3,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,
mediawiki,BACKEND,0,0,3,3,999,0,0,0,0,0,,0,0,0,0,UP,3,3,0,,0,141,0,,1,3,0,,0,,1,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,
";

    #[test]
    fn haproxy_26_show_stat_is_read_by_column_name() {
        let rows = parse_show_stat(STAT_26).unwrap();
        assert_eq!(rows.len(), 5);
        let mw1 = &rows[0];
        assert_eq!(
            (mw1.proxy.as_str(), mw1.name.as_str()),
            ("mediawiki", "mw1")
        );
        assert_eq!(mw1.kind, RowKind::Server);
        assert_eq!(mw1.status_word(), Status::Up);
        assert_eq!(mw1.check_status.as_deref(), Some("L7OK"));
        assert_eq!(mw1.check_desc.as_deref(), Some("Layer7 check passed"));
        assert_eq!(mw1.check_health, Some((4, 3, 2)));
        let mw2 = &rows[1];
        assert_eq!(mw2.sessions, 3);
        assert_eq!(mw2.status, "DOWN 1/3");
        assert_eq!(mw2.status_word().pool_state(), PoolState::Down);
        assert_eq!(mw2.check_text(), "L4CON Layer4 connection problem");
        let mw3 = &rows[2];
        assert_eq!(mw3.status_word(), Status::NoCheck);
        assert_eq!(mw3.status_word().pool_state(), PoolState::Up);
        assert_eq!(mw3.check_status, None);
        assert_eq!(rows[3].status_word().pool_state(), PoolState::Maint);
        assert_eq!(rows[4].kind, RowKind::Backend);
    }

    #[test]
    fn status_words_map_to_pool_states() {
        for (text, want) in [
            ("UP", PoolState::Up),
            ("UP 1/2", PoolState::Up),
            ("no check", PoolState::Up),
            ("DRAIN", PoolState::Drain),
            ("DRAIN 1/3", PoolState::Drain),
            ("NOLB", PoolState::Drain),
            ("MAINT", PoolState::Maint),
            ("MAINT (resolution)", PoolState::Maint),
            ("DOWN", PoolState::Down),
            ("DOWN 2/3", PoolState::Down),
            ("", PoolState::Down),
            ("no", PoolState::Down),
            ("OPEN", PoolState::Down),
        ] {
            assert_eq!(Status::parse(text).pool_state(), want, "{text:?}");
        }
    }

    #[test]
    fn garbage_and_refusals_are_errors() {
        for bad in [
            "",
            "\n\n",
            "Unknown command",
            "Permission denied\n",
            "# svname,status,scur\nmw1,UP,0\n",
            "# pxname,svname,status,scur\nmediawiki,mw1,UP\n",
            "# pxname,svname,status,scur\nmediawiki,mw1,UP,many\n",
            "# pxname,svname,status,scur\nmediawiki,mw1,\"UP,0\n",
            "# pxname,svname,status,scur\nmediawiki,mw1,\"UP\"x,0\n",
            "# pxname,svname,status,scur,type\nmediawiki,mw1,UP,0,9\n",
            "# pxname,svname,status,scur\n# pxname,svname,status,scur\n",
            "# pxname,svname,status,scur\n,,UP,0\n",
        ] {
            assert!(parse_show_stat(bad).is_err(), "{bad:?}");
        }
        let e = parse_show_stat("# pxname,svname,status\n").unwrap_err();
        assert!(e.to_string().contains("\"scur\""), "{e}");
    }

    #[test]
    fn quoted_fields_may_hold_commas_and_quotes() {
        let text = "# pxname,svname,status,scur,check_desc\nmediawiki,mw1,UP,0,\"a, \"\"b\"\"\"\n";
        let rows = parse_show_stat(text).unwrap();
        assert_eq!(rows[0].check_desc.as_deref(), Some("a, \"b\""));
    }

    /// What HAProxy 2.6 printed for `show servers state`.
    const SERVERS_STATE_26: &str = "1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 mediawiki 1 mw1 127.0.0.1 0 1 1 1 15 3 4 6 14 0 0 0 - 19101 - 0 0 - - 0
3 mediawiki 2 mw2 127.0.0.1 2 8 1 1 15 3 4 6 6 0 0 0 - 19102 - 0 0 - - 0
3 mediawiki 3 mw3 127.0.0.1 2 0 1 1 1 1 0 3 0 0 0 0 - 19103 - 0 0 - - 0
";

    #[test]
    fn haproxy_26_servers_state_is_read_by_column_name() {
        let rows = parse_servers_state(SERVERS_STATE_26).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].server, "mw1");
        assert_eq!(rows[0].admin, AdminState::Maint);
        assert_eq!(rows[0].operational, OperationalState::Down);
        assert!(
            rows[0].check_enabled,
            "paused in maintenance is still enabled"
        );
        assert_eq!(rows[1].admin, AdminState::Drain);
        assert_eq!(rows[1].operational, OperationalState::Up);
        assert!(!rows[2].check_enabled);
        assert_eq!(rows[2].admin, AdminState::Ready);
        assert!(parse_servers_state("").unwrap().is_empty());
        assert!(parse_servers_state("2\n# be_name\n").is_err());
        assert!(parse_servers_state("1\nbe_name srv_name\n").is_err());
        assert!(parse_servers_state(
            "1\n# be_name srv_name srv_op_state srv_admin_state\nb s 7 0\n"
        )
        .is_err());
        assert!(
            parse_servers_state("1\n# be_name srv_name srv_op_state srv_admin_state\nb s 2\n")
                .is_err()
        );
    }

    fn csv_field(s: &str) -> String {
        if s.contains([',', '"']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }

    fn status_text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("UP".to_string()),
            Just("DOWN".to_string()),
            Just("MAINT".to_string()),
            Just("DRAIN".to_string()),
            Just("no check".to_string()),
            (1u32..5, 2u32..6).prop_map(|(a, b)| format!("UP {a}/{b}")),
            "[a-z]{1,8}".prop_map(|b| format!("MAINT (via {b}/s1)")),
        ]
    }

    type Generated = (String, String, String, u64, Option<String>, Option<String>);

    fn generated_row() -> impl Strategy<Value = Generated> {
        (
            "[A-Za-z0-9_.-]{1,12}",
            "[A-Za-z0-9_.-]{1,12}",
            status_text(),
            any::<u64>(),
            proptest::option::of("L[4-7](OK|CON|TOUT|STS)"),
            // A row may not start with "# " (that is a header), so no `#` first.
            proptest::option::of("[ -\"$-~][ -~]{0,19}"),
        )
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(text in any::<String>()) {
            let _ = parse_show_stat(&text);
            let _ = parse_servers_state(&text);
        }

        #[test]
        fn arbitrary_rows_under_a_real_header_never_panic(
            rows in proptest::collection::vec("[ -~]{0,60}", 0..6),
        ) {
            let text = format!("# pxname,svname,status,scur,type,\n{}", rows.join("\n"));
            let _ = parse_show_stat(&text);
            let text = format!("1\n# be_name srv_name srv_op_state srv_admin_state\n{}", rows.join("\n"));
            let _ = parse_servers_state(&text);
        }

        #[test]
        fn generated_csv_round_trips_in_any_column_order(
            rows in proptest::collection::vec(generated_row(), 0..8),
            order in Just(vec!["pxname", "svname", "status", "scur", "check_status", "check_desc", "bin", "type"])
                .prop_shuffle(),
        ) {
            let mut text = format!("# {},\n", order.join(","));
            for (px, sv, status, scur, check, desc) in &rows {
                let fields: Vec<String> = order
                    .iter()
                    .map(|col| match *col {
                        "pxname" => px.clone(),
                        "svname" => sv.clone(),
                        "status" => status.clone(),
                        "scur" => scur.to_string(),
                        "check_status" => check.clone().unwrap_or_default(),
                        "check_desc" => csv_field(desc.as_deref().unwrap_or("")),
                        "type" => "2".to_string(),
                        _ => "17".to_string(),
                    })
                    .collect();
                text.push_str(&fields.join(","));
                text.push_str(",\n");
            }
            let parsed = parse_show_stat(&text).unwrap();
            prop_assert_eq!(parsed.len(), rows.len());
            for (got, (px, sv, status, scur, check, desc)) in parsed.iter().zip(&rows) {
                prop_assert_eq!(&got.proxy, px);
                prop_assert_eq!(&got.name, sv);
                prop_assert_eq!(&got.status, status);
                prop_assert_eq!(got.sessions, *scur);
                prop_assert_eq!(got.kind, RowKind::Server);
                prop_assert_eq!(&got.check_status, check);
                let want_desc = desc.as_deref().map(str::trim).filter(|d| !d.is_empty());
                prop_assert_eq!(got.check_desc.as_deref(), want_desc);
            }
        }
    }
}
