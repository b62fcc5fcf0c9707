//! Recent cluster events for people watching: servers coming and going, corrupt replicas,
//! repairs, expired sessions. A bounded ring buffer, newest last; never a source of truth.

use std::collections::VecDeque;
use std::sync::Mutex;

use cairn_proto::pb;

/// Events kept.
const CAPACITY: usize = 200;

/// How much an event matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// The master's recent events, and how many of each kind happened since start.
#[derive(Default)]
pub struct EventLog {
    events: Mutex<VecDeque<pb::StatusEvent>>,
    totals: Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl EventLog {
    /// Records an event; `kind` is a short stable name (`server_dead`, ...).
    pub fn push(&self, level: Level, kind: &'static str, message: impl Into<String>) {
        *self
            .totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_default() += 1;
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() == CAPACITY {
            events.pop_front();
        }
        events.push_back(pb::StatusEvent {
            unix_ms: cairn_common::time::unix_ms(),
            level: level.as_str().to_string(),
            kind: kind.to_string(),
            message: message.into(),
        });
    }

    /// Events of each kind since start (not bounded by the ring buffer).
    pub fn totals(&self) -> Vec<(&'static str, u64)> {
        self.totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    /// The events, oldest first.
    pub fn recent(&self) -> Vec<pb::StatusEvent> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest() {
        let log = EventLog::default();
        for i in 0..CAPACITY + 5 {
            log.push(Level::Info, "test", format!("e{i}"));
        }
        let r = log.recent();
        assert_eq!(r.len(), CAPACITY);
        assert_eq!(r[0].message, "e5");
        assert_eq!(
            r.last().map(|e| e.message.as_str()),
            Some(format!("e{}", CAPACITY + 4).as_str())
        );
    }
}
