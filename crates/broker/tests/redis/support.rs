//! Test doubles around the broker: a metrics recorder that notes which
//! metrics were touched, and a "Redis" that accepts connections and never
//! answers.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// The names (with labels, `name{k=v}`) of every metric registered so far.
#[derive(Debug, Default)]
pub(crate) struct Names(Mutex<BTreeSet<String>>);

impl Names {
    pub(crate) fn names(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().cloned().collect()
    }

    fn note(&self, key: &Key) {
        let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        self.0.lock().unwrap().insert(format!("{}{{{}}}", key.name(), labels.join(",")));
    }
}

struct NoteNames(Arc<Names>);

impl Recorder for NoteNames {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0.note(key);
        Counter::noop()
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0.note(key);
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0.note(key);
        Histogram::noop()
    }
}

/// Installs the process-wide recorder (once) and returns what it notes.
pub(crate) fn install() -> Arc<Names> {
    static NAMES: OnceLock<Arc<Names>> = OnceLock::new();
    NAMES
        .get_or_init(|| {
            let names = Arc::new(Names::default());
            metrics::set_global_recorder(NoteNames(names.clone())).expect("no other recorder in this test binary");
            names
        })
        .clone()
}

/// A listener that accepts connections and never answers: a Redis that hangs.
#[derive(Debug)]
pub(crate) struct Blackhole {
    addr: SocketAddr,
}

impl Blackhole {
    pub(crate) fn start() -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
            }
        });
        Blackhole { addr }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }
}
