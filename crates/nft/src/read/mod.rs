//! Reading our tables back from the kernel: netlink dumps of tables, chains, sets, elements and
//! rules ([`dump`]), parsed by libnftnl into plain structs ([`objects`], [`exprs`]), assembled
//! into a typed [`Ruleset`] ([`assemble`]).
//!
//! The whole read is one consistent snapshot: the ruleset generation is compared before and
//! after the dumps, and a dump the kernel flags as interrupted, a change in between, or a rule
//! or element listed twice starts the read again (a bounded number of times). The last case is
//! a multi-part dump that ran while another process was *preparing* a transaction in the same
//! table: the kernel counts the not yet active objects when it resumes a dump but flags only
//! committed changes, so the resumed part repeats objects (seen in the concurrency test).

mod assemble;
mod dump;
mod exprs;
mod objects;

use crate::error::ReadError;
use crate::socket::NetlinkSocket;
use assemble::ReadRule;
use dump::{DumpError, Message};
use objects::{InTable, RawChain, RawElem, RawSet, RawTable, Request};
use ruleset::{Family, Ruleset, Table, TableId};
use std::ffi::CStr;
use std::io;

/// How many times a read starts again when the ruleset changes under it.
const ATTEMPTS: usize = 8;
/// The longest table name nf_tables accepts (`NFT_NAME_MAXLEN` − 1).
const NAME_MAX: usize = 255;

/// Why one attempt at reading failed.
enum Failure {
    /// The ruleset changed while we read it: try again.
    Retry(String),
    /// A real error.
    Fatal(ReadError),
}

impl From<ReadError> for Failure {
    fn from(e: ReadError) -> Self {
        Failure::Fatal(e)
    }
}

/// Reads the tables named `table` of the `ip` and `ip6` families in the calling thread's
/// network namespace: each one that exists, with its chains, rules, sets, maps and elements
/// (not the elements of dynamic sets, which the packet path adds). A missing table is simply
/// absent from the result; tables of other names are not read.
///
/// Rules that are not ones we write come back as [`crate::decode::undecodable_rule`]s, sets we
/// would not make with an empty key, so the planner replaces them.
///
/// With `like`, each set whose elements are exactly those of the same set there shares them
/// ([`ruleset::Set::share_elements`]) as soon as it is read.
pub fn read_tables(table: &str, like: Option<&Ruleset>) -> Result<Ruleset, ReadError> {
    let object = |problem: &str| ReadError::Malformed {
        object: format!("table {table}"),
        problem: problem.to_owned(),
    };
    if table.is_empty() || table.len() > NAME_MAX {
        return Err(object("a table name must have 1 to 255 bytes"));
    }
    let name = objects::c_name(table).map_err(|p| object(&p))?;
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        match read_once(&name, table, like) {
            Ok(ruleset) => return Ok(ruleset),
            Err(Failure::Retry(why)) => {
                tracing::debug!(
                    reason = %why,
                    "the ruleset changed while it was read; reading again"
                );
                last = why;
            }
            Err(Failure::Fatal(e)) => return Err(e),
        }
    }
    Err(ReadError::Io {
        what: format!("reading the tables {table}"),
        source: io::Error::new(
            io::ErrorKind::Interrupted,
            format!("the ruleset changed during each of {ATTEMPTS} attempts (last: {last})"),
        ),
    })
}

/// A netlink socket and the next sequence number.
struct Session {
    sock: NetlinkSocket,
    seq: u32,
}

impl Session {
    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// The ruleset generation.
    fn generation(&mut self) -> Result<u32, Failure> {
        let seq = self.next_seq();
        dump::generation(&self.sock, seq).map_err(|e| {
            Failure::Fatal(ReadError::Io {
                what: "reading the ruleset generation".into(),
                source: e.into_io(),
            })
        })
    }

    /// Runs one dump of `request` in the tables named `table` of `family`, `parse` taking each
    /// message as it arrives (see [`dump::dump`]), and returns what it kept. `what` describes
    /// the dump for errors ("dumping the chains of ip kube-nftproxy"). A dump that must be
    /// read again returns nothing of what `parse` kept.
    fn dump<T>(
        &mut self,
        request: Request<'_>,
        family: u16,
        table: &CStr,
        what: &str,
        parse: impl FnMut(&Message, &mut Vec<T>) -> Result<(), String>,
    ) -> Result<Vec<T>, Failure> {
        let seq = self.next_seq();
        let request = objects::request(request, family, table, seq).map_err(|problem| {
            ReadError::Malformed {
                object: what.to_owned(),
                problem,
            }
        })?;
        match dump::dump(&self.sock, &request, seq, parse) {
            Ok(objects) => Ok(objects),
            Err(DumpError::Unparsable(problem)) => Err(Failure::Fatal(ReadError::Malformed {
                object: what.to_owned(),
                problem,
            })),
            Err(DumpError::Interrupted) => Err(Failure::Retry(format!("{what}: interrupted"))),
            // The table or set went away between two dumps: a concurrent change.
            Err(DumpError::Refused { errno, .. }) if errno == libc::ENOENT => {
                Err(Failure::Retry(format!("{what}: no such object")))
            }
            Err(e) => Err(Failure::Fatal(ReadError::Io {
                what: what.to_owned(),
                source: e.into_io(),
            })),
        }
    }
}

/// `NFPROTO_*` of a family.
fn nfproto(family: Family) -> u16 {
    match family {
        Family::Ip => libc::NFPROTO_IPV4 as u16,
        Family::Ip6 => libc::NFPROTO_IPV6 as u16,
    }
}

/// One attempt: the generation, every family's raw objects, the generation again; then, from
/// that consistent snapshot, the typed tables.
fn read_once(name: &CStr, table: &str, like: Option<&Ruleset>) -> Result<Ruleset, Failure> {
    let sock = NetlinkSocket::open().map_err(|source| ReadError::Io {
        what: "opening a netfilter netlink socket".into(),
        source,
    })?;
    // Extended ACKs only make refusals more precise; a kernel without them is fine.
    let _ = sock.enable_ext_ack();
    let mut session = Session { sock, seq: 0 };
    let before = session.generation()?;
    let mut raw = Vec::new();
    for family in [Family::Ip, Family::Ip6] {
        let id = TableId {
            family,
            name: table.to_owned(),
        };
        let like = like.and_then(|l| l.tables.get(&id));
        if let Some(objects) = read_family(&mut session, family, name, table, like)? {
            raw.push((family, objects));
        }
    }
    let after = session.generation()?;
    if before != after {
        // The dumps may have seen different rulesets (a rule of a chain that the chain dump
        // did not have, …): assemble only a consistent snapshot.
        return Err(Failure::Retry(format!(
            "the ruleset generation went from {before} to {after}"
        )));
    }
    let mut ruleset = Ruleset::default();
    for (family, objects) in raw {
        let typed = assemble::table_of(
            family,
            &objects.table,
            objects.chains,
            objects.sets,
            objects.rules,
        )?;
        ruleset.tables.insert(
            TableId {
                family,
                name: table.to_owned(),
            },
            typed,
        );
    }
    Ok(ruleset)
}

/// The raw objects of one table.
struct RawObjects {
    table: RawTable,
    chains: Vec<RawChain>,
    sets: assemble::Sets,
    rules: Vec<ReadRule>,
}

/// A parser for [`Session::dump`] that keeps the objects of the table `table` of `family` (the
/// kernel does not filter every dump), failing on a message libnftnl cannot parse.
fn in_table<'a, T: 'a>(
    parse: fn(&Message) -> Result<InTable<T>, String>,
    family: u16,
    table: &'a str,
) -> impl FnMut(&Message, &mut Vec<T>) -> Result<(), String> + 'a {
    move |message, objects| {
        let parsed = parse(message)?;
        if ours(&parsed, family, table) {
            objects.push(parsed.object);
        }
        Ok(())
    }
}

/// Whether `parsed` belongs to the table `table` of `family`.
fn ours<T>(parsed: &InTable<T>, family: u16, table: &str) -> bool {
    parsed.family == u32::from(family) && parsed.table == table
}

/// The raw objects of the table `table` of `family`, if it exists.
fn read_family(
    session: &mut Session,
    family: Family,
    name: &CStr,
    table: &str,
    like: Option<&Table>,
) -> Result<Option<RawObjects>, Failure> {
    let nf = nfproto(family);
    let id = format!("{} {table}", family.keyword());

    let what = format!("dumping the tables of {}", family.keyword());
    let tables = session.dump(
        Request::Tables,
        nf,
        name,
        &what,
        in_table(objects::parse_table, nf, table),
    )?;
    let Some(raw_table) = tables.into_iter().next() else {
        return Ok(None);
    };

    let what = format!("dumping the chains of {id}");
    let parse = in_table(objects::parse_chain, nf, table);
    let chains = session.dump(Request::Chains, nf, name, &what, parse)?;

    let what = format!("dumping the sets of {id}");
    let parse = in_table(objects::parse_set, nf, table);
    let raw_sets: Vec<RawSet> = session.dump(Request::Sets, nf, name, &what, parse)?;
    let mut sets = assemble::Sets::default();
    for mut set in raw_sets {
        if assemble::wants_elements(&set) {
            read_elements(session, nf, name, table, &id, &mut set)?;
        }
        sets.add(set, like);
    }

    let what = format!("dumping the rules of {id}");
    let anonymous = sets.anonymous();
    let parse = |message: &Message, rules: &mut Vec<ReadRule>| {
        let parsed = objects::parse_rule(message)?;
        if ours(&parsed, nf, table) {
            rules.push(ReadRule::new(family, &anonymous, &parsed.object));
        }
        Ok(())
    };
    let rules: Vec<ReadRule> = session.dump(Request::Rules, nf, name, &what, parse)?;
    let mut handles: Vec<u64> = rules.iter().map(|r| r.handle).collect();
    handles.sort_unstable();
    if let Some(twice) = handles.windows(2).find(|w| w[0] == w[1]) {
        // A multi-part dump that ran while another process was preparing a transaction in
        // this table (the kernel flags only committed changes as interrupting a dump).
        return Err(Failure::Retry(format!(
            "{what}: rule handle {} listed twice",
            twice[0]
        )));
    }

    Ok(Some(RawObjects {
        table: raw_table,
        chains,
        sets,
        rules,
    }))
}

/// Reads the elements of `set` into it.
fn read_elements(
    session: &mut Session,
    nf: u16,
    name: &CStr,
    table: &str,
    id: &str,
    set: &mut RawSet,
) -> Result<(), Failure> {
    let object = format!("set {id} {}", set.name);
    let what = format!("dumping the elements of {object}");
    let set_name = objects::c_name(&set.name).map_err(|problem| ReadError::Malformed {
        object: object.clone(),
        problem,
    })?;
    // The first other set the dump returned elements of (an error once the dump succeeded).
    let mut stranger = None;
    let elements = session.dump(
        Request::Elements(&set_name),
        nf,
        name,
        &what,
        |message, elements: &mut Vec<RawElem>| {
            let parsed = objects::parse_elements(message)?;
            if ours(&parsed, nf, table) {
                let (set_of, some) = parsed.object;
                if set_of == set.name {
                    elements.extend(some);
                } else if stranger.is_none() {
                    stranger = Some(set_of);
                }
            }
            Ok(())
        },
    )?;
    if let Some(set_of) = stranger {
        return Err(Failure::Fatal(ReadError::Malformed {
            object,
            problem: format!("the element dump returned elements of set {set_of}"),
        }));
    }
    if set.elements.is_empty() {
        // Not `extend`, which would copy them.
        set.elements = elements;
    } else {
        set.elements.extend(elements);
    }
    let mut keys: Vec<(&[u8], u32)> = set
        .elements
        .iter()
        .map(|e| (e.key.as_slice(), e.flags))
        .collect();
    keys.sort_unstable();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        // As for rules: a multi-part dump beside a transaction being prepared.
        return Err(Failure::Retry(format!("{what}: an element listed twice")));
    }
    Ok(())
}
