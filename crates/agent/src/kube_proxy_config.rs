//! kube-proxy's own configuration file (`KubeProxyConfiguration`,
//! `kubeproxy.config.k8s.io/v1alpha1`, YAML or JSON exactly as kube-proxy's ConfigMap holds it,
//! or that whole ConfigMap), mapped onto kube-nftproxy's configuration keys.
//!
//! Every field ends in one of three places:
//!
//! * **mapped** onto one of our keys ([`Mapped`], with the field it came from), after kube-proxy's
//!   own defaulting where that differs from ours (e.g. `nodePortAddresses` unset in iptables mode
//!   means every address);
//! * **ignored** ([`Ignored`]: the field and the reason), named when it is set to something else
//!   than its zero value or kube-proxy's default, and for the defaults that kube-proxy acts on
//!   at start (conntrack sysctls, OOM score) even when unset. Unknown fields land here too;
//! * **unsupported** ([`Unsupported`]): the field would change where packets go and we cannot do
//!   what it asks. That is an error, unless our own configuration sets the key named in
//!   [`Unsupported::unless`] (ours wins, so the kube-proxy field no longer matters).
//!
//! Zero values (`""`, `0`, `0s`, `null`, `false`) mean "unset", as kube-proxy's defaulting reads
//! them: kubeadm writes every field out with its zero value.

use ipnet::IpNet;
use model::parse_ip_sloppy;
use serde_json::{json, Map, Value};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The only `apiVersion` read.
pub const API_VERSION: &str = "kubeproxy.config.k8s.io/v1alpha1";
/// The `kind`.
pub const KIND: &str = "KubeProxyConfiguration";
/// The key of kube-proxy's ConfigMap (as kubeadm writes it) that holds the configuration.
pub const CONFIG_MAP_KEY: &str = "config.conf";

/// kube-proxy's default healthz port.
const HEALTHZ_PORT: u16 = 10256;
/// kube-proxy's default metrics port.
const METRICS_PORT: u16 = 10249;
/// Why an unknown field is ignored.
const UNKNOWN: &str =
    "unknown field: not part of kubeproxy.config.k8s.io/v1alpha1 as kube-nftproxy \
                       knows it (a typo, or a field of another kube-proxy version)";

/// The proxy mode the file asks for; it decides which of `iptables.*`, `ipvs.*` and
/// `nftables.*` kube-proxy reads, and some defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// `iptables` (also the default on Linux when `mode` is empty).
    Iptables,
    /// `ipvs`.
    Ipvs,
    /// `nftables`.
    Nftables,
}

impl fmt::Display for ProxyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyMode::Iptables => "iptables",
            ProxyMode::Ipvs => "ipvs",
            ProxyMode::Nftables => "nftables",
        })
    }
}

/// A value for one of our keys, and the kube-proxy field it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// Our key (`config/kube-nftproxy.toml`).
    pub key: &'static str,
    /// Its value, as the configuration file would hold it.
    pub value: Value,
    /// The kube-proxy field, e.g. `nftables.syncPeriod` (with a note when it is kube-proxy's
    /// default rather than a value of the file).
    pub field: String,
}

/// A field that is not honoured, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// The field, e.g. `conntrack.maxPerCore`.
    pub field: String,
    /// Its value (a string as is, anything else as JSON), or kube-proxy's default when unset.
    pub value: String,
    /// Why it is not honoured, and what to do instead.
    pub reason: String,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}: {}", self.field, self.value, self.reason)
    }
}

/// A field that would change where packets go, which we cannot honour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The field.
    pub field: String,
    /// What it asks and why we cannot.
    pub reason: String,
    /// Our key that replaces it: when our own configuration sets it, this is not an error.
    pub unless: Option<&'static str>,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)?;
        if let Some(key) = self.unless {
            write!(f, " (or set {key} in kube-nftproxy's configuration)")?;
        }
        Ok(())
    }
}

/// A kube-proxy configuration file, mapped.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeProxyConfig {
    /// The file.
    pub path: PathBuf,
    /// `mode` (empty: iptables).
    pub mode: ProxyMode,
    /// Values for our keys, in the order they were read.
    pub mapped: Vec<Mapped>,
    /// Fields not honoured, with the reason.
    pub ignored: Vec<Ignored>,
    /// Fields we cannot honour: errors unless our configuration replaces them.
    pub unsupported: Vec<Unsupported>,
}

impl KubeProxyConfig {
    /// The value mapped onto `key`, if any.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.mapped.iter().find(|m| m.key == key).map(|m| &m.value)
    }

    /// The kube-proxy field `key`'s value came from.
    pub fn field_of(&self, key: &str) -> Option<&str> {
        self.mapped
            .iter()
            .find(|m| m.key == key)
            .map(|m| m.field.as_str())
    }

    /// The mapped values as a configuration dictionary (our keys).
    pub fn values(&self) -> Map<String, Value> {
        self.mapped
            .iter()
            .map(|m| (m.key.to_owned(), m.value.clone()))
            .collect()
    }

    /// Whether `field` is named among the ignored fields.
    pub fn is_ignored(&self, field: &str) -> bool {
        self.ignored.iter().any(|i| i.field == field)
    }
}

/// The file cannot be read, or is not a kube-proxy configuration.
#[derive(Debug, thiserror::Error)]
pub enum KubeProxyConfigError {
    /// Reading failed.
    #[error("kube-proxy configuration {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not YAML or JSON, or not a `KubeProxyConfiguration` of the supported version.
    #[error("kube-proxy configuration {}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Reads and maps the kube-proxy configuration file `path`.
pub fn read(path: &Path) -> Result<KubeProxyConfig, KubeProxyConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| KubeProxyConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Maps the kube-proxy configuration `text` (YAML or JSON; `path` names it in messages).
pub fn parse(text: &str, path: &Path) -> Result<KubeProxyConfig, KubeProxyConfigError> {
    let invalid = |message: String| KubeProxyConfigError::Invalid {
        path: path.to_owned(),
        message,
    };
    let document = parse_document(text)
        .and_then(unwrap_config_map)
        .map_err(invalid)?;
    let Value::Object(map) = document else {
        return Err(invalid(format!("not a {KIND} object")));
    };
    let mut top = Section::new("", map);
    match top.take("kind") {
        Some(Value::String(kind)) if kind == KIND => {}
        Some(kind) => return Err(invalid(format!("not a {KIND} (kind is {kind})"))),
        None => return Err(invalid(format!("not a {KIND} (no kind)"))),
    }
    match top.take("apiVersion") {
        Some(Value::String(version)) if version == API_VERSION => {}
        found => {
            return Err(invalid(format!(
                "apiVersion is {}, expected {API_VERSION} (the only version kube-nftproxy reads)",
                found.map_or("missing".to_owned(), |v| v.to_string())
            )))
        }
    }
    let mut mapper = Mapper::default();
    mapper.run(top);
    Ok(KubeProxyConfig {
        path: path.to_owned(),
        mode: mapper.mode,
        mapped: mapper.mapped,
        ignored: mapper.ignored,
        unsupported: mapper.unsupported,
    })
}

/// YAML or JSON text as a JSON value.
fn parse_document(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Err("the file is empty".into());
    }
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
    } else {
        serde_norway::from_str(text).map_err(|e| format!("not valid YAML: {e}"))
    }
}

/// A whole ConfigMap (`kubectl get configmap kube-proxy -o yaml`) gives its `config.conf`
/// entry, or its only entry that is a `KubeProxyConfiguration`; anything else is returned as is.
fn unwrap_config_map(document: Value) -> Result<Value, String> {
    if document.get("kind").and_then(Value::as_str) != Some("ConfigMap") {
        return Ok(document);
    }
    let data = document
        .get("data")
        .and_then(Value::as_object)
        .ok_or("a ConfigMap without data")?;
    if let Some(text) = data.get(CONFIG_MAP_KEY).and_then(Value::as_str) {
        return parse_document(text).map_err(|e| format!("ConfigMap entry {CONFIG_MAP_KEY}: {e}"));
    }
    let candidates: Vec<Value> = data
        .values()
        .filter_map(Value::as_str)
        .filter_map(|text| parse_document(text).ok())
        .filter(|doc| doc.get("kind").and_then(Value::as_str) == Some(KIND))
        .collect();
    match <[Value; 1]>::try_from(candidates) {
        Ok([only]) => Ok(only),
        Err(found) => Err(format!(
            "a ConfigMap with {} {KIND} entries and no {CONFIG_MAP_KEY} entry: \
             give the entry's content instead",
            found.len()
        )),
    }
}

/// One object of the file, its fields taken one by one; what is left is unknown.
struct Section {
    path: String,
    map: Map<String, Value>,
}

impl Section {
    fn new(path: &str, map: Map<String, Value>) -> Section {
        Section {
            path: path.to_owned(),
            map,
        }
    }

    /// The full name of field `name` of this section.
    fn field(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// Takes field `name`; `null` counts as absent.
    fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|v| !v.is_null())
    }
}

/// A Go duration (`1h2m3.5s`, `300ms`, `0`) in seconds.
pub fn parse_go_duration(text: &str) -> Option<f64> {
    let text = text.trim();
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_end];
        if number.is_empty() || number == "." {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    Some(if negative { -total } else { total })
}

/// True for the zero values that mean "unset": null, false, 0, "", "0", a zero duration, and
/// lists and objects holding only those.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || parse_go_duration(s) == Some(0.0),
        Value::Array(items) => items.iter().all(is_zero),
        Value::Object(map) => map.values().all(is_zero),
    }
}

/// kube-proxy's default for a field that kube-nftproxy ignores: a value equal to it is not
/// reported (it is what kube-proxy does when the field is unset).
fn kube_proxy_default(field: &str) -> Option<Value> {
    Some(match field {
        "iptables.masqueradeBit" | "nftables.masqueradeBit" => json!(14),
        "iptables.localhostNodePorts" => json!(true),
        "iptables.syncPeriod" | "ipvs.syncPeriod" | "nftables.syncPeriod" => json!("30s"),
        "iptables.minSyncPeriod" | "nftables.minSyncPeriod" => json!("1s"),
        "ipvs.ipSet.hashSize" => json!(1024),
        "ipvs.ipSet.maxElements" => json!(65536),
        "clientConnection.contentType" => json!("application/vnd.kubernetes.protobuf"),
        "clientConnection.qps" => json!(5),
        "clientConnection.burst" => json!(10),
        "configSyncPeriod" => json!("15m"),
        "logging.format" => json!("text"),
        "logging.flushFrequency" => json!("5s"),
        "udpIdleTimeout" => json!("250ms"),
        _ => return None,
    })
}

/// Whether `value` equals `default` (durations and numbers compared by value; a number for a
/// duration is nanoseconds, as Go's `time.Duration` in JSON).
fn same_value(value: &Value, default: &Value) -> bool {
    if value == default {
        return true;
    }
    let seconds = |v: &Value| match v {
        Value::String(s) => parse_go_duration(s),
        _ => None,
    };
    match (value, default) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Number(ns), d) => match (ns.as_f64(), seconds(d)) {
            (Some(ns), Some(d)) => (ns / 1e9 - d).abs() < 1e-9,
            _ => false,
        },
        (v, d) => match (seconds(v), seconds(d)) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-9,
            _ => false,
        },
    }
}

/// Appends kube-proxy's default port to an address without one (`0.0.0.0` → `0.0.0.0:10256`,
/// `::` or `[::]` → `[::]:10256`), as kube-proxy does.
pub fn append_port(address: &str, port: u16) -> String {
    if address.parse::<SocketAddr>().is_ok() {
        return address.to_owned();
    }
    let bare = address
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(address);
    match parse_ip_sloppy(bare) {
        Some(IpAddr::V4(ip)) => format!("{ip}:{port}"),
        Some(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        None => address.to_owned(),
    }
}

/// Top-level fields that are ignored, and why (named when set to something else than zero or
/// kube-proxy's default).
const TOP_LEVEL_IGNORED: &[(&str, &str)] = &[
    (
        "logging",
        "kube-nftproxy logs to standard error: choose the format with --log-format text|json \
         and the levels with RUST_LOG",
    ),
    (
        "enableProfiling",
        "there is no /debug/pprof (a Go runtime feature)",
    ),
    (
        "showHiddenMetricsForVersion",
        "kube-nftproxy has no hidden metrics",
    ),
    (
        "configSyncPeriod",
        "the informer resync period: the agent's watches need none (the kernel's rules are \
         read back every full_sync_period_seconds)",
    ),
    (
        "portRange",
        "unused since kube-proxy's userspace mode was removed",
    ),
    ("winkernel", "Windows only"),
    ("windowsRunAsService", "Windows only"),
    (
        "udpIdleTimeout",
        "removed from kube-proxy (userspace mode): no effect",
    ),
    ("resourceContainer", "removed from kube-proxy: no effect"),
];

/// What a feature gate means here.
enum Gate {
    /// kube-nftproxy always behaves as with the gate set to this value.
    Fixed(bool, &'static str),
    /// Setting it changes nothing in kube-nftproxy, or only what is named in the reason.
    Ignored(&'static str),
}

/// The feature gates that change Service behaviour in kube-proxy.
fn gate(name: &str) -> Option<Gate> {
    use Gate::*;
    Some(match name {
        "TopologyAwareHints" | "ServiceTrafficDistribution" => Fixed(
            true,
            "EndpointSlice topology hints (trafficDistribution) are always followed",
        ),
        "PreferSameTrafficDistribution" => Fixed(
            true,
            "node hints (trafficDistribution: PreferSameNode) are always followed",
        ),
        "ProxyTerminatingEndpoints" | "EndpointSliceTerminatingCondition" => Fixed(
            true,
            "serving terminating endpoints are always used when no endpoint is ready",
        ),
        "KubeProxyDrainingTerminatingNodes" => Fixed(
            true,
            "/healthz always fails while the Node is being deleted or tainted \
             ToBeDeletedByClusterAutoscaler",
        ),
        "LoadBalancerIPMode" => Fixed(
            true,
            "LoadBalancer ingress IPs with ipMode: Proxy are always left to the load balancer",
        ),
        "ServiceInternalTrafficPolicy" => {
            Fixed(true, "internalTrafficPolicy: Local is always honoured")
        }
        "IPv6DualStack" => Fixed(true, "both IP families are always proxied"),
        "MixedProtocolLBService" => Fixed(
            true,
            "LoadBalancer Services mixing protocols are always proxied",
        ),
        "KubeProxyNFTablesLocalhostNodePorts" => {
            Fixed(false, "NodePorts are never served on loopback addresses")
        }
        "MultiCIDRServiceAllocator" => Ignored(
            "kube-proxy's nftables mode then drops traffic to unallocated addresses of the \
             ServiceCIDRs; kube-nftproxy does not watch ServiceCIDR objects and has no such \
             rule (docs/architecture.md)",
        ),
        "NFTablesProxyMode" => Ignored("kube-nftproxy always programs nftables"),
        "AllAlpha" | "AllBeta" => Ignored(
            "kube-nftproxy has no feature gates: the gates that change Service behaviour are \
             checked one by one, by name",
        ),
        _ => return None,
    })
}

/// Collects the mapping.
struct Mapper {
    mode: ProxyMode,
    mapped: Vec<Mapped>,
    ignored: Vec<Ignored>,
    unsupported: Vec<Unsupported>,
    /// `featureGates`, as given.
    gates: Map<String, Value>,
    /// `iptables.localhostNodePorts` in iptables mode.
    localhost_node_ports: Option<bool>,
}

impl Default for Mapper {
    fn default() -> Self {
        Mapper {
            mode: ProxyMode::Iptables,
            mapped: Vec::new(),
            ignored: Vec::new(),
            unsupported: Vec::new(),
            gates: Map::new(),
            localhost_node_ports: None,
        }
    }
}

impl Mapper {
    fn set(&mut self, key: &'static str, value: impl Into<Value>, field: impl Into<String>) {
        self.mapped.retain(|m| m.key != key);
        self.mapped.push(Mapped {
            key,
            value: value.into(),
            field: field.into(),
        });
    }

    fn ignore(&mut self, field: impl Into<String>, value: &Value, reason: impl Into<String>) {
        self.ignored.push(Ignored {
            field: field.into(),
            value: match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            },
            reason: reason.into(),
        });
    }

    fn unsupported(
        &mut self,
        field: impl Into<String>,
        reason: impl Into<String>,
        unless: Option<&'static str>,
    ) {
        self.unsupported.push(Unsupported {
            field: field.into(),
            reason: reason.into(),
            unless,
        });
    }

    fn wrong_type(&mut self, field: String, value: &Value, expected: &str) {
        self.unsupported(
            field,
            format!("{value} is not {expected} (kube-proxy would not start)"),
            None,
        );
    }

    /// A string field; empty counts as unset.
    fn string(&mut self, section: &mut Section, name: &str) -> Option<String> {
        match section.take(name)? {
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(section.field(name), &other, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, section: &mut Section, name: &str) -> Option<bool> {
        match section.take(name)? {
            Value::Bool(b) => Some(b),
            other => {
                self.wrong_type(section.field(name), &other, "true or false");
                None
            }
        }
    }

    fn integer(&mut self, section: &mut Section, name: &str) -> Option<i64> {
        match section.take(name)? {
            Value::Number(n) if n.as_i64().is_some() => n.as_i64(),
            other => {
                self.wrong_type(section.field(name), &other, "an integer");
                None
            }
        }
    }

    /// A duration field in seconds (a Go duration string such as `30s` or `1m30s`).
    fn duration(&mut self, section: &mut Section, name: &str) -> Option<f64> {
        let value = section.take(name)?;
        match value.as_str().and_then(parse_go_duration) {
            Some(seconds) if seconds >= 0.0 => Some(seconds),
            Some(_) => {
                self.unsupported(
                    section.field(name),
                    format!("{value} is negative (kube-proxy would not start)"),
                    None,
                );
                None
            }
            None => {
                self.wrong_type(section.field(name), &value, "a duration such as \"30s\"");
                None
            }
        }
    }

    /// A sub-object; anything else is a type error.
    fn object(&mut self, section: &mut Section, name: &str) -> Section {
        let path = section.field(name);
        match section.take(name) {
            Some(Value::Object(map)) => Section::new(&path, map),
            Some(other) => {
                self.wrong_type(path.clone(), &other, "an object");
                Section::new(&path, Map::new())
            }
            None => Section::new(&path, Map::new()),
        }
    }

    /// Names the fields left in `section` as ignored with `reason` (when set to something else
    /// than zero or kube-proxy's default), or as unknown when not in `known`.
    fn rest(&mut self, section: Section, known: &[&str], reason: &str) {
        let path = section.path.clone();
        for (name, value) in section.map {
            let field = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            if known.contains(&name.as_str()) {
                self.report_leaves(&field, &value, reason);
            } else {
                self.ignore(field, &value, UNKNOWN);
            }
        }
    }

    /// Names every leaf of `value` that is neither zero nor kube-proxy's default.
    fn report_leaves(&mut self, field: &str, value: &Value, reason: &str) {
        if let Value::Object(map) = value {
            for (name, value) in map {
                self.report_leaves(&format!("{field}.{name}"), value, reason);
            }
            return;
        }
        let is_default = kube_proxy_default(field).is_some_and(|d| same_value(value, &d));
        if !is_zero(value) && !is_default {
            self.ignore(field, value, reason);
        }
    }

    fn run(&mut self, mut top: Section) {
        self.mode(&mut top);
        self.feature_gates(&mut top);
        self.identity(&mut top);
        self.client_connection(&mut top);
        self.proxy_sections(&mut top);
        self.local_detection(&mut top);
        self.node_port_addresses(&mut top);
        self.conntrack(&mut top);
        self.process(&mut top);
        for (name, reason) in TOP_LEVEL_IGNORED {
            if let Some(value) = top.map.remove(*name) {
                self.report_leaves(name, &value, reason);
            }
        }
        self.rest(top, &[], "");
    }

    fn mode(&mut self, top: &mut Section) {
        self.mode = match self.string(top, "mode").as_deref() {
            None | Some("iptables") => ProxyMode::Iptables,
            Some("ipvs") => ProxyMode::Ipvs,
            Some("nftables") => ProxyMode::Nftables,
            Some(other) => {
                let reason = if other == "kernelspace" {
                    "kernelspace is the Windows (HNS) mode".to_owned()
                } else {
                    format!("unknown proxy mode {other:?} (iptables, ipvs or nftables)")
                };
                self.unsupported("mode", reason, None);
                ProxyMode::Nftables
            }
        };
    }

    fn feature_gates(&mut self, top: &mut Section) {
        let gates = match top.take("featureGates") {
            Some(Value::Object(map)) => map,
            Some(other) => {
                self.wrong_type("featureGates".into(), &other, "a map of names to booleans");
                return;
            }
            None => return,
        };
        for (name, value) in &gates {
            let field = format!("featureGates.{name}");
            let Some(enabled) = value.as_bool() else {
                self.wrong_type(field, value, "true or false");
                continue;
            };
            match gate(name) {
                Some(Gate::Fixed(ours, what)) if ours != enabled => {
                    // The localhost NodePorts gate only matters when nodePortAddresses
                    // includes loopback addresses: decided there.
                    if name != "KubeProxyNFTablesLocalhostNodePorts" {
                        self.unsupported(
                            field,
                            format!("kube-nftproxy always behaves as with {name}={ours}: {what}"),
                            None,
                        );
                    }
                }
                Some(Gate::Fixed(..)) => {}
                Some(Gate::Ignored(reason)) => {
                    if enabled || !matches!(name.as_str(), "MultiCIDRServiceAllocator") {
                        self.ignore(field, value, reason);
                    }
                }
                None => self.ignore(
                    field,
                    value,
                    "not a gate that changes how kube-nftproxy proxies Services",
                ),
            }
        }
        self.gates = gates;
    }

    /// `hostnameOverride`, `bindAddress`, `healthzBindAddress`, `metricsBindAddress`,
    /// `bindAddressHardFail`, `enableProfiling`, `showHiddenMetricsForVersion`.
    fn identity(&mut self, top: &mut Section) {
        if let Some(name) = self.string(top, "hostnameOverride") {
            // kube-proxy's GetHostname: trimmed and lower-cased.
            let name = name.trim().to_lowercase();
            if !name.is_empty() {
                self.set("node_name", name, "hostnameOverride");
            }
        }
        let bind = self.string(top, "bindAddress").and_then(|text| {
            let ip = parse_ip_sloppy(&text);
            if ip.is_none() {
                self.unsupported(
                    "bindAddress",
                    format!("{text:?} is not an IP address"),
                    Some("node_ips"),
                );
            }
            ip
        });
        if let Some(ip) = bind.filter(|ip| !ip.is_unspecified()) {
            // kube-proxy's primary node IP of that family; the other family's comes from the
            // Node (checked against dual stack in `local_detection`).
            self.set("node_ips", json!([ip.to_string()]), "bindAddress");
        }
        let ipv6 = bind.is_some_and(|ip| ip.is_ipv6());
        let addresses = [
            (
                "healthzBindAddress",
                "healthz_bind_address",
                HEALTHZ_PORT,
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ),
            (
                "metricsBindAddress",
                "metrics_bind_address",
                METRICS_PORT,
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ),
        ];
        for (field, key, port, v6_default) in addresses {
            match self.string(top, field) {
                Some(address) => self.set(key, append_port(&address, port), field),
                None if ipv6 => self.set(
                    key,
                    SocketAddr::new(v6_default, port).to_string(),
                    format!("{field} (unset: kube-proxy's default for an IPv6 bindAddress)"),
                ),
                None => {}
            }
        }
        // kube-nftproxy always exits when it cannot listen: the same as true, and false only
        // matters when binding fails (which is then logged before the exit).
        self.boolean(top, "bindAddressHardFail");
    }

    fn client_connection(&mut self, top: &mut Section) {
        let mut section = self.object(top, "clientConnection");
        if let Some(path) = self.string(&mut section, "kubeconfig") {
            self.set("kubeconfig", path, "clientConnection.kubeconfig");
        }
        let json_only = "the agent always asks the API server for JSON";
        let no_rate_limit = "the agent makes one list and one watch per kind (Services, \
                             EndpointSlices, its Node) and has no client-side rate limit";
        for (name, reason) in [
            ("acceptContentTypes", json_only),
            ("contentType", json_only),
            ("qps", no_rate_limit),
            ("burst", no_rate_limit),
        ] {
            if let Some(value) = section.take(name) {
                self.report_leaves(&section.field(name), &value, reason);
            }
        }
        self.rest(section, &[], "");
    }

    /// `iptables.*`, `ipvs.*`, `nftables.*`: the section of the mode gives the masquerade
    /// settings and the sync periods (ipvs mode: masquerading from `iptables.*`).
    fn proxy_sections(&mut self, top: &mut Section) {
        let mode = self.mode;
        let mut iptables = self.object(top, "iptables");
        let mut ipvs = self.object(top, "ipvs");
        let mut nftables = self.object(top, "nftables");
        match mode {
            ProxyMode::Nftables => {
                self.masquerade(&mut nftables);
                self.sync_periods(&mut nftables, 1.0);
            }
            ProxyMode::Iptables => {
                self.masquerade(&mut iptables);
                self.sync_periods(&mut iptables, 1.0);
            }
            ProxyMode::Ipvs => {
                self.masquerade(&mut iptables);
                self.sync_periods(&mut ipvs, 0.0);
            }
        }
        if mode != ProxyMode::Nftables
            && self.boolean(&mut iptables, "snatNodeInternalIP") == Some(true)
        {
            self.unsupported(
                "iptables.snatNodeInternalIP",
                "masquerading to the node's InternalIP instead of the outgoing interface's \
                     address is not implemented",
                None,
            );
        }
        if mode == ProxyMode::Iptables {
            // Read with nodePortAddresses.
            self.localhost_node_ports = self.boolean(&mut iptables, "localhostNodePorts");
        }
        if mode == ProxyMode::Ipvs {
            let scheduler = self
                .string(&mut ipvs, "scheduler")
                .unwrap_or_else(|| "rr".to_owned());
            self.ignore(
                "ipvs.scheduler",
                &json!(scheduler),
                "endpoints are picked at random for each new connection (as kube-proxy's \
                 iptables and nftables modes do), not by an IPVS scheduler",
            );
            let ipvs_only: [(&str, &str); 6] = [
                (
                    "excludeCIDRs",
                    "kube-nftproxy creates no IPVS virtual servers, so there are none to keep",
                ),
                (
                    "strictARP",
                    "there is no kube-ipvs0 interface holding Service IPs to answer ARP for",
                ),
                ("tcpTimeout", "IPVS connection timeouts: conntrack's apply"),
                (
                    "tcpFinTimeout",
                    "IPVS connection timeouts: conntrack's apply",
                ),
                ("udpTimeout", "IPVS connection timeouts: conntrack's apply"),
                (
                    "ipSet",
                    "there are no ipsets: nftables sets and maps replace them",
                ),
            ];
            for (name, reason) in ipvs_only {
                if let Some(value) = ipvs.map.remove(name) {
                    let field = ipvs.field(name);
                    self.report_leaves(&field, &value, reason);
                }
            }
        }
        let not_read = |section: &str| {
            let modes = match section {
                "iptables" => "iptables and ipvs modes",
                "ipvs" => "ipvs mode",
                _ => "nftables mode",
            };
            format!("kube-proxy reads it only in {modes}, and mode is {mode}")
        };
        let iptables_known = [
            "masqueradeBit",
            "masqueradeAll",
            "localhostNodePorts",
            "snatNodeInternalIP",
            "syncPeriod",
            "minSyncPeriod",
        ];
        let mut iptables_reason = not_read("iptables");
        if mode == ProxyMode::Ipvs {
            iptables_reason = "in ipvs mode kube-proxy reads the sync periods from ipvs.* \
                               and localhostNodePorts not at all"
                .into();
        }
        self.rest(iptables, &iptables_known, &iptables_reason);
        let ipvs_known = [
            "syncPeriod",
            "minSyncPeriod",
            "scheduler",
            "excludeCIDRs",
            "strictARP",
            "tcpTimeout",
            "tcpFinTimeout",
            "udpTimeout",
            "ipSet",
        ];
        self.rest(ipvs, &ipvs_known, &not_read("ipvs"));
        let nftables_known = [
            "masqueradeBit",
            "masqueradeAll",
            "syncPeriod",
            "minSyncPeriod",
        ];
        self.rest(nftables, &nftables_known, &not_read("nftables"));
    }

    fn masquerade(&mut self, section: &mut Section) {
        if let Some(all) = self.boolean(section, "masqueradeAll") {
            self.set("masquerade_all", all, section.field("masqueradeAll"));
        }
        if let Some(bit) = self.integer(section, "masqueradeBit") {
            let field = section.field("masqueradeBit");
            match u8::try_from(bit).ok().filter(|b| *b <= 31) {
                Some(bit) => self.set("masquerade_bit", bit, field),
                None => self.unsupported(
                    field,
                    format!("{bit} is not a bit of a 32-bit mark (0-31)"),
                    Some("masquerade_bit"),
                ),
            }
        }
    }

    /// `syncPeriod` and `minSyncPeriod` of the mode's section; zero means kube-proxy's default
    /// (`default_min` for the minimum: 1 s, or 0 s in ipvs mode).
    fn sync_periods(&mut self, section: &mut Section, default_min: f64) {
        if let Some(seconds) = self.duration(section, "syncPeriod").filter(|s| *s > 0.0) {
            self.set("sync_period_seconds", seconds, section.field("syncPeriod"));
        }
        let field = section.field("minSyncPeriod");
        match self.duration(section, "minSyncPeriod").filter(|s| *s > 0.0) {
            Some(seconds) => self.set("min_sync_period_seconds", seconds, field),
            // Our default is 1 s, as kube-proxy's iptables and nftables modes.
            None if default_min != 1.0 => self.set(
                "min_sync_period_seconds",
                default_min,
                format!("{field} (unset: kube-proxy's default in this mode)"),
            ),
            None => {}
        }
    }

    /// `detectLocalMode`, `detectLocal.*` and `clusterCIDR`; then `bindAddress` against dual
    /// stack.
    fn local_detection(&mut self, top: &mut Section) {
        let mode = self.string(top, "detectLocalMode");
        let mut detect_local = self.object(top, "detectLocal");
        let bridge = self.string(&mut detect_local, "bridgeInterface");
        let prefix = self.string(&mut detect_local, "interfaceNamePrefix");
        self.rest(detect_local, &[], "");
        match mode.as_deref() {
            None => {}
            Some(m @ ("ClusterCIDR" | "NodeCIDR")) => {
                self.set("detect_local_mode", m, "detectLocalMode")
            }
            Some(m @ ("BridgeInterface" | "InterfaceNamePrefix")) => {
                let detail = match (m, &bridge, &prefix) {
                    ("BridgeInterface", Some(b), _) => format!(" (bridge {b})"),
                    ("InterfaceNamePrefix", _, Some(p)) => format!(" (interfaces {p}*)"),
                    _ => String::new(),
                };
                self.unsupported(
                    "detectLocalMode",
                    format!(
                        "{m}{detail}: telling pod traffic by the interface it arrives on \
                         (nft iifname) is not implemented; kube-nftproxy tells it by source \
                         address, with ClusterCIDR (clusterCIDR) or NodeCIDR (the Node's \
                         spec.podCIDRs)"
                    ),
                    Some("detect_local_mode"),
                );
            }
            Some(other) => self.unsupported(
                "detectLocalMode",
                format!(
                    "unknown mode {other:?} (ClusterCIDR, NodeCIDR, BridgeInterface or \
                     InterfaceNamePrefix)"
                ),
                Some("detect_local_mode"),
            ),
        }
        for (field, value, needs) in [
            ("detectLocal.bridgeInterface", &bridge, "BridgeInterface"),
            (
                "detectLocal.interfaceNamePrefix",
                &prefix,
                "InterfaceNamePrefix",
            ),
        ] {
            if let (Some(value), false) = (value, mode.as_deref() == Some(needs)) {
                self.ignore(
                    field,
                    &json!(value),
                    format!("used only with detectLocalMode: {needs} (kube-proxy ignores it too)"),
                );
            }
        }
        let mut families = Vec::new();
        if let Some(text) = self.string(top, "clusterCIDR") {
            let mut cidrs = Vec::new();
            for part in text.split(',').map(str::trim) {
                match part.parse::<IpNet>() {
                    Ok(net) => cidrs.push(net),
                    Err(_) => self.unsupported(
                        "clusterCIDR",
                        format!("{part:?} is not a CIDR"),
                        Some("cluster_cidrs"),
                    ),
                }
            }
            families = cidrs.iter().map(|c| c.addr().is_ipv4()).collect();
            let dual_pair = families.len() == 2 && families[0] != families[1];
            if families.len() > 2 || (families.len() == 2 && !dual_pair) {
                self.unsupported(
                    "clusterCIDR",
                    format!("{text:?}: at most one CIDR per IP family (a dual-stack pair)"),
                    Some("cluster_cidrs"),
                );
            } else if cidrs.len() == text.split(',').count() {
                let list: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
                self.set("cluster_cidrs", json!(list), "clusterCIDR");
            }
        }
        let bind = self.value_of("node_ips").is_some();
        if bind && families.len() == 2 {
            self.unsupported(
                "bindAddress",
                "on a dual-stack node kube-proxy takes this family's address from bindAddress \
                 and the other family's from the Node, but node_ips replaces all of the Node's \
                 addresses: give this node's address of each family",
                Some("node_ips"),
            );
        }
    }

    fn value_of(&self, key: &str) -> Option<&Value> {
        self.mapped.iter().find(|m| m.key == key).map(|m| &m.value)
    }

    /// `nodePortAddresses` (with `iptables.localhostNodePorts` and the
    /// `KubeProxyNFTablesLocalhostNodePorts` gate for loopback addresses).
    fn node_port_addresses(&mut self, top: &mut Section) {
        let localhost_node_ports = self.localhost_node_ports;
        let entries: Vec<String> = match top.take("nodePortAddresses") {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut entries = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) => entries.push(s.trim().to_owned()),
                        other => self.wrong_type("nodePortAddresses".into(), &other, "a string"),
                    }
                }
                entries
            }
            Some(other) => {
                self.wrong_type("nodePortAddresses".into(), &other, "a list of strings");
                return;
            }
        };
        let mut field = "nodePortAddresses".to_owned();
        let entries = if entries.is_empty() {
            if self.mode == ProxyMode::Nftables {
                // kube-proxy's nftables default, and ours.
                return;
            }
            field = format!(
                "nodePortAddresses (unset: all, kube-proxy's default in {} mode)",
                self.mode
            );
            vec!["all".to_owned()]
        } else {
            entries
        };
        let primary = entries.iter().any(|e| e == "primary");
        let mut cidrs: Vec<IpNet> = Vec::new();
        let mut bad = false;
        for entry in entries.iter().filter(|e| *e != "primary") {
            match entry.as_str() {
                "all" => cidrs.extend(["0.0.0.0/0", "::/0"].map(net)),
                "localhost" => cidrs.extend(["127.0.0.0/8", "::1/128"].map(net)),
                text => match text.parse::<IpNet>() {
                    Ok(net) => cidrs.push(net),
                    Err(_) => {
                        bad = true;
                        self.unsupported(
                            "nodePortAddresses",
                            format!("{text:?} is neither a CIDR nor primary, all or localhost"),
                            Some("node_port_addresses"),
                        );
                    }
                },
            }
        }
        if bad {
            return;
        }
        if primary {
            if cidrs.is_empty() {
                self.set("node_port_addresses", json!(["primary"]), field);
            } else {
                self.unsupported(
                    "nodePortAddresses",
                    format!(
                        "{entries:?}: kube-nftproxy takes either primary or a list of CIDRs, \
                         not both"
                    ),
                    Some("node_port_addresses"),
                );
            }
            return;
        }
        // Loopback addresses: listed on purpose (`localhost`, a range inside 127.0.0.0/8 or
        // ::1), or only inside a wide range (`all`, the iptables default).
        let covers_loopback = cidrs.iter().any(|c| {
            c.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST))
                || c.contains(&IpAddr::V6(Ipv6Addr::LOCALHOST))
        });
        let lists_loopback = cidrs
            .iter()
            .any(|c| net("127.0.0.0/8").contains(c) || *c == net("::1/128"));
        let not_served = "kube-nftproxy never serves NodePorts on loopback addresses (as \
                          kube-proxy's nftables mode without that gate)";
        match self.mode {
            // kube-proxy's nftables mode serves them only with the gate and an explicit entry.
            ProxyMode::Nftables if lists_loopback => {
                let gate = self
                    .gates
                    .get("KubeProxyNFTablesLocalhostNodePorts")
                    .and_then(Value::as_bool);
                if gate == Some(true) {
                    self.unsupported(
                        "featureGates.KubeProxyNFTablesLocalhostNodePorts",
                        format!(
                            "with loopback addresses in nodePortAddresses kube-proxy serves \
                             NodePorts on them; {not_served}"
                        ),
                        Some("node_port_addresses"),
                    );
                }
            }
            // The iptables mode serves them on 127.0.0.1 unless localhostNodePorts is false.
            ProxyMode::Iptables if covers_loopback && localhost_node_ports != Some(false) => {
                if lists_loopback {
                    self.unsupported(
                        "nodePortAddresses",
                        format!(
                            "{entries:?} lists loopback addresses, on which kube-proxy's \
                             iptables mode serves NodePorts; {not_served}"
                        ),
                        Some("node_port_addresses"),
                    );
                } else {
                    let value = match localhost_node_ports {
                        Some(_) => json!(true),
                        None => json!("true (kube-proxy's default)"),
                    };
                    self.ignore(
                        "iptables.localhostNodePorts",
                        &value,
                        format!(
                            "kube-proxy's iptables mode also serves NodePorts on 127.0.0.1; \
                             {not_served}; set it to false to say so"
                        ),
                    );
                }
            }
            _ => {}
        }
        let list: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
        self.set("node_port_addresses", json!(list), field.clone());
        self.ignore(
            field,
            &json!(entries),
            "honoured for the node's own addresses only: kube-proxy accepts NodePorts on every \
             local address inside these CIDRs, kube-nftproxy on the Node's status.addresses \
             (or node_ips) inside them",
        );
    }

    /// `conntrack.*`: kube-proxy sets conntrack sysctls at start, from its defaults when unset.
    fn conntrack(&mut self, top: &mut Section) {
        let mut section = self.object(top, "conntrack");
        let reason = |sysctl: &str| {
            format!(
                "kube-nftproxy sets no sysctls: what kube-proxy set stays until the next boot; \
                 to keep it set {sysctl} in /etc/sysctl.d"
            )
        };
        let max_per_core = self.integer(&mut section, "maxPerCore");
        let min = self.integer(&mut section, "min");
        let max_per_core_effective = max_per_core.unwrap_or(32768);
        if max_per_core_effective != 0 {
            let note = |v: Option<i64>, default: i64| match v {
                Some(v) => json!(v),
                None => json!(format!("{default} (kube-proxy's default)")),
            };
            self.ignore(
                "conntrack.maxPerCore",
                &note(max_per_core, 32768),
                reason("net.netfilter.nf_conntrack_max (maxPerCore × CPUs, at least min)"),
            );
            self.ignore(
                "conntrack.min",
                &note(min, 131072),
                reason("net.netfilter.nf_conntrack_max"),
            );
        } else if let Some(min) = min.filter(|m| *m != 0) {
            self.ignore(
                "conntrack.min",
                &json!(min),
                "kube-proxy ignores it too when maxPerCore is 0",
            );
        }
        let timeouts = [
            (
                "tcpEstablishedTimeout",
                Some("24h0m0s"),
                "net.netfilter.nf_conntrack_tcp_timeout_established",
            ),
            (
                "tcpCloseWaitTimeout",
                Some("1h0m0s"),
                "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
            ),
            ("udpTimeout", None, "net.netfilter.nf_conntrack_udp_timeout"),
            (
                "udpStreamTimeout",
                None,
                "net.netfilter.nf_conntrack_udp_timeout_stream",
            ),
        ];
        for (name, default, sysctl) in timeouts {
            let field = section.field(name);
            let present = section.map.get(name).is_some_and(|v| !v.is_null());
            let value = self.duration(&mut section, name);
            let shown = match (present, value, default) {
                (true, Some(s), _) if s > 0.0 => Some(json!(seconds_text(s))),
                (false, _, Some(d)) => Some(json!(format!("{d} (kube-proxy's default)"))),
                _ => None,
            };
            if let Some(shown) = shown {
                self.ignore(field, &shown, reason(sysctl));
            }
        }
        if self.boolean(&mut section, "tcpBeLiberal") == Some(true) {
            self.ignore(
                "conntrack.tcpBeLiberal",
                &json!(true),
                reason("net.netfilter.nf_conntrack_tcp_be_liberal = 1"),
            );
        }
        if let Some(value) = section.take("max") {
            self.report_leaves(
                "conntrack.max",
                &value,
                "removed from kube-proxy: no effect",
            );
        }
        self.rest(section, &[], "");
    }

    /// `oomScoreAdj` (kube-proxy sets -999 when unset).
    fn process(&mut self, top: &mut Section) {
        let value = match self.integer(top, "oomScoreAdj") {
            Some(v) => json!(v),
            None => json!("-999 (kube-proxy's default)"),
        };
        self.ignore(
            "oomScoreAdj",
            &value,
            "kube-nftproxy does not change its OOM score: set OOMScoreAdjust= in its systemd \
             unit (or give its pod a high priority class)",
        );
    }
}

/// A CIDR written in the source.
fn net(text: &str) -> IpNet {
    text.parse().expect("a valid CIDR")
}

/// Seconds written back as a Go duration for messages.
fn seconds_text(seconds: f64) -> String {
    if seconds.fract() == 0.0 {
        format!("{}s", seconds as u64)
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for (text, seconds) in [
            ("0", 0.0),
            ("0s", 0.0),
            ("30s", 30.0),
            ("1m30s", 90.0),
            ("24h0m0s", 86400.0),
            ("1.5s", 1.5),
            ("300ms", 0.3),
            ("2h22m", 8520.0),
            ("-1s", -1.0),
            ("100us", 0.0001),
        ] {
            let got = parse_go_duration(text).unwrap_or_else(|| panic!("{text}"));
            assert!((got - seconds).abs() < 1e-9, "{text}: {got}");
        }
        for bad in ["", "30", "s", "1x", "1.2.3s", "m5"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn ports_are_appended_as_kube_proxy_does() {
        assert_eq!(append_port("0.0.0.0", 10256), "0.0.0.0:10256");
        assert_eq!(append_port("::", 10256), "[::]:10256");
        assert_eq!(append_port("[::]", 10256), "[::]:10256");
        assert_eq!(append_port("127.0.0.1:9999", 10249), "127.0.0.1:9999");
        assert_eq!(append_port("[::1]:9999", 10249), "[::1]:9999");
        assert_eq!(append_port("nowhere", 1), "nowhere");
    }

    #[test]
    fn zero_values_and_defaults() {
        assert!(is_zero(
            &json!({"a": "", "b": {"c": "0s", "d": null}, "e": []})
        ));
        assert!(!is_zero(&json!({"a": 1})));
        assert!(same_value(&json!("30s"), &json!("0h0m30s")));
        assert!(same_value(&json!(5_000_000_000u64), &json!("5s")));
        assert!(!same_value(&json!("31s"), &json!("30s")));
    }
}
