//! Table-driven tests: every case runs, each failure is labelled with its case, and the test
//! fails once at the end listing them all (a table that stops at its first failure hides how
//! much of the behaviour is missing).

/// The failures collected over a table's cases.
#[derive(Debug, Default)]
pub struct Failures {
    lines: Vec<String>,
    cases: usize,
    failed_cases: usize,
}

impl Failures {
    /// Starts the case `label`.
    pub fn case(&mut self, label: String) -> Case<'_> {
        self.cases += 1;
        Case {
            failures: self,
            label,
            failed: false,
        }
    }

    /// Panics listing every failure, when there is any.
    #[track_caller]
    pub fn assert_none(self) {
        assert!(
            self.lines.is_empty(),
            "{} of {} cases failed:\n{}",
            self.failed_cases,
            self.cases,
            self.lines.join("\n")
        );
    }
}

/// One case of a table.
#[derive(Debug)]
pub struct Case<'a> {
    failures: &'a mut Failures,
    label: String,
    failed: bool,
}

impl Case<'_> {
    /// Records `what` (built only when needed) as a failure of this case unless `ok`.
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if ok {
            return;
        }
        if !self.failed {
            self.failed = true;
            self.failures.failed_cases += 1;
        }
        let line = format!("{}: {}", self.label, what());
        self.failures.lines.push(line);
    }
}
