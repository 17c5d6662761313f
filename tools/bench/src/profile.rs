//! Where a worker's CPU goes, from `perf script` output (tools/bench/profile.sh):
//! each sample counts once, under the first role its call stack shows, so
//! the shares add up to the process's CPU. The roles are the worker's
//! stages, the work around them, and librdkafka's own threads.

use std::fmt;

/// A role and the symbols that mark a call stack as doing its work.
struct Role {
    name: &'static str,
    marks: &'static [&'static str],
}

/// In order of precedence: a stage's work calls into librdkafka and the
/// allocator, so the stage claims the sample before what it calls does.
const ROLES: &[Role] = &[
    Role {
        name: "copy (the ceiling's one stage)",
        marks: &["designs::Copy"],
    },
    Role {
        name: "parse",
        marks: &["stages::Parse>", "event::decode"],
    },
    Role {
        name: "validate",
        marks: &["stages::Validate>"],
    },
    Role {
        name: "augment",
        marks: &["stages::Augment>"],
    },
    Role {
        name: "produce: outputs into librdkafka's queue",
        marks: &["sink::Produce>", "sink::produce::"],
    },
    Role {
        name: "delivery reports",
        marks: &["DeliveryContext", "rd_kafka_poll"],
    },
    Role {
        name: "source: consumer queue, batching",
        marks: &["source::run_source"],
    },
    Role {
        name: "commits",
        marks: &["run_committer"],
    },
    Role {
        name: "librdkafka broker threads: fetch, decompress, compress, send",
        marks: &["rd_kafka_broker_thread_main"],
    },
    Role {
        name: "librdkafka main thread",
        marks: &["rd_kafka_thread_main"],
    },
    Role {
        name: "tokio scheduler and timers",
        marks: &["tokio::runtime"],
    },
];

const OTHER: &str = "other (kernel entry, threads' start)";

/// Samples per role, most first; the leaf symbols each role spends most in.
#[derive(Debug, Default)]
pub struct Profile {
    samples: usize,
    roles: Vec<RoleShare>,
    /// The process's CPU per event while sampled, when known.
    us_per_event: Option<f64>,
}

#[derive(Debug)]
struct RoleShare {
    name: &'static str,
    samples: usize,
    leaves: Vec<(String, usize)>,
}

impl Profile {
    /// Reads `perf script -F comm,tid,ip,sym` output: one block per sample,
    /// a header line, then one line per frame, innermost first.
    pub fn of_perf_script(text: &str) -> Self {
        let mut profile = Self::default();
        for sample in text.split("\n\n") {
            let mut lines = sample.trim().lines();
            let (Some(_header), frames) = (lines.next(), lines) else {
                continue;
            };
            let frames: Vec<&str> = frames.map(symbol).collect();
            let Some(&leaf) = frames.first() else {
                continue;
            };
            let name = ROLES
                .iter()
                .find(|r| frames.iter().any(|f| r.marks.iter().any(|m| f.contains(m))))
                .map_or(OTHER, |r| r.name);
            profile.count(name, leaf);
        }
        profile.roles.sort_by_key(|r| std::cmp::Reverse(r.samples));
        for role in &mut profile.roles {
            role.leaves.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        }
        profile
    }

    /// Also gives each role in microseconds of CPU per event.
    pub fn with_us_per_event(self, us_per_event: Option<f64>) -> Self {
        Self {
            us_per_event,
            ..self
        }
    }

    fn count(&mut self, name: &'static str, leaf: &str) {
        self.samples += 1;
        let role = match self.roles.iter().position(|r| r.name == name) {
            Some(i) => &mut self.roles[i],
            None => {
                self.roles.push(RoleShare {
                    name,
                    samples: 0,
                    leaves: Vec::new(),
                });
                self.roles.last_mut().expect("just pushed")
            }
        };
        role.samples += 1;
        match role.leaves.iter_mut().find(|(l, _)| l == leaf) {
            Some((_, n)) => *n += 1,
            None => role.leaves.push((leaf.to_string(), 1)),
        }
    }

    /// The share of all samples under `role`, 0 to 1.
    pub fn share(&self, role: &str) -> f64 {
        let n = self
            .roles
            .iter()
            .find(|r| r.name == role)
            .map_or(0, |r| r.samples);
        n as f64 / self.samples.max(1) as f64
    }
}

/// A frame's symbol: `perf script` writes the address, then the symbol.
fn symbol(frame: &str) -> &str {
    let frame = frame.trim();
    frame.split_once(' ').map_or(frame, |(_, s)| s.trim())
}

/// A Markdown table: each role's share of the samples (and of the CPU per
/// event, when known) and its three heaviest leaf symbols.
impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.samples.max(1) as f64;
        writeln!(f, "{} samples\n", self.samples)?;
        let (us_header, us_rule) = match self.us_per_event {
            Some(_) => (" us per event |", " --: |"),
            None => ("", ""),
        };
        writeln!(
            f,
            "| role | share of CPU |{us_header} where most of it is |"
        )?;
        writeln!(f, "| --- | --: |{us_rule} --- |")?;
        for role in &self.roles {
            let share = role.samples as f64 / total;
            let leaves: Vec<String> = role
                .leaves
                .iter()
                .take(3)
                .map(|(leaf, n)| format!("`{leaf}` {:.1} %", 100.0 * *n as f64 / total))
                .collect();
            let us = self
                .us_per_event
                .map(|us| format!(" {:.2} |", share * us))
                .unwrap_or_default();
            writeln!(
                f,
                "| {} | {:.1} % |{us} {} |",
                role.name,
                100.0 * share,
                leaves.join(", ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "\
tokio-rt-worker 21331 
\t          16d824 __memcpy_avx512_unaligned_erms (inlined)
\t          53a1fb pixelpipe_worker::event::read::optional_string
\t          53cc2a pixelpipe_worker::event::decode
\t          459936 pixelpipe_worker::pool::worker_loop::{{closure}}
\t          4971a6 tokio::runtime::task::core::Core<T,S>::poll

rdk:broker1 21340 
\t          aaaaaa LZ4_compress_generic_validated (inlined)
\t          bbbbbb rd_kafka_msgset_create_ProduceRequest
\t          cccccc rd_kafka_broker_thread_main

tokio-rt-worker 21331 
\t          dddddd epoll_wait
\t          eeeeee tokio::runtime::io::driver::Driver::turn

tokio-rt-worker 21332 
\t          ffffff pixelpipe_worker::event::lex::Lexer::string
\t          53cc2a pixelpipe_worker::event::decode

swapper 0 
\t          111111 do_idle
";

    #[test]
    fn each_sample_counts_once_under_the_first_role_its_stack_shows() {
        let p = Profile::of_perf_script(SCRIPT);
        assert_eq!(p.samples, 5);
        assert_eq!(p.share("parse"), 0.4);
        assert_eq!(
            p.share("librdkafka broker threads: fetch, decompress, compress, send"),
            0.2
        );
        assert_eq!(p.share("tokio scheduler and timers"), 0.2);
        assert_eq!(p.share(OTHER), 0.2);
        assert_eq!(p.share("augment"), 0.0);
    }

    #[test]
    fn the_table_lists_roles_by_share_with_their_heaviest_leaves() {
        let table = Profile::of_perf_script(SCRIPT).to_string();
        let rows: Vec<&str> = table
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| ---"))
            .collect();
        assert_eq!(rows[0], "| role | share of CPU | where most of it is |");
        assert!(
            rows[1].starts_with(
                "| parse | 40.0 % | `__memcpy_avx512_unaligned_erms (inlined)` 20.0 %"
            ),
            "{table}"
        );
        assert_eq!(rows.len(), 5, "{table}");
    }

    #[test]
    fn with_the_cpu_per_event_each_role_is_also_given_in_microseconds() {
        let table = Profile::of_perf_script(SCRIPT)
            .with_us_per_event(Some(5.0))
            .to_string();
        assert!(
            table.contains("| role | share of CPU | us per event | where most of it is |"),
            "{table}"
        );
        assert!(table.contains("| parse | 40.0 % | 2.00 | `"), "{table}");
    }
}
