//! chancery's statistics checked against R: every expected value comes from
//! `tests/reference/make_fixtures.R` (R 4.2.2, survival 3.5-3, mice 3.15.0),
//! run on the datasets in `tests/reference/*.csv`.

use chancery::stats::design::{Adjustment, Covariate, Factor};
use std::collections::HashMap;
use std::path::Path;

/// Expected values keyed as in make_fixtures.R; `None` is R's `NA`.
struct Expected(HashMap<String, Option<f64>>);

impl Expected {
    fn load() -> Expected {
        Expected::load_file("tests/reference/expected.csv")
    }

    /// Loads a key,value file of expected values (path from the repository root).
    fn load_file(file: &str) -> Expected {
        let mut rdr = csv::ReaderBuilder::new()
            .comment(Some(b'#'))
            .from_path(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
            .expect(file);
        let mut map = HashMap::new();
        for rec in rdr.records() {
            let rec = rec.unwrap();
            let v = if &rec[1] == "NA" { None } else { Some(rec[1].parse::<f64>().unwrap()) };
            map.insert(rec[0].to_string(), v);
        }
        Expected(map)
    }

    fn get(&self, key: &str) -> f64 {
        self.0.get(key).unwrap_or_else(|| panic!("no expected value {key}")).unwrap_or_else(|| panic!("{key} is NA"))
    }

    fn opt(&self, key: &str) -> Option<f64> {
        *self.0.get(key).unwrap_or_else(|| panic!("no expected value {key}"))
    }

    fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
}

/// Asserts |got − want| ≤ tol × max(|want|, 1e-300) or both tiny.
#[track_caller]
fn close(what: &str, got: f64, want: f64, tol: f64) {
    let err = (got - want).abs();
    let scale = want.abs().max(1e-12);
    assert!(got.is_finite(), "{what}: got non-finite {got}, want {want}");
    assert!(err <= tol * scale, "{what}: got {got:.17}, want {want:.17} (rel err {:.3e}, tol {tol:e})", err / scale);
}

const CLOSED: f64 = 1e-8;
const ITERATIVE: f64 = 1e-6;

/// One participant row of a fixture dataset.
#[allow(dead_code)]
struct Data {
    treated: Vec<bool>,
    site: Vec<String>,
    employment: Vec<String>,
    condition: Vec<String>,
    age: Vec<f64>,
    phq9_0: Vec<f64>,
    work13: Vec<Option<bool>>,
    work13_obs: Vec<Option<bool>>,
    phq9_12: Vec<Option<f64>>,
    phq9_12_obs: Vec<Option<f64>>,
    takeup: Vec<Option<bool>>,
    days: Vec<f64>,
    job: Vec<bool>,
}

fn read_table(file: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut rdr = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .from_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference").join(file))
        .unwrap();
    let header = rdr.headers().unwrap().iter().map(String::from).collect();
    let rows = rdr.records().map(|r| r.unwrap().iter().map(String::from).collect()).collect();
    (header, rows)
}

impl Data {
    fn load(file: &str) -> Data {
        let (h, rows) = read_table(file);
        let col = |name: &str| -> Vec<String> {
            let j = h.iter().position(|x| x == name).unwrap_or_else(|| panic!("{name}"));
            rows.iter().map(|r| r[j].clone()).collect()
        };
        let num = |name: &str| -> Vec<Option<f64>> {
            col(name).iter().map(|s| if s.is_empty() { None } else { Some(s.parse().unwrap()) }).collect()
        };
        let boolean = |name: &str| -> Vec<Option<bool>> { num(name).iter().map(|v| v.map(|x| x == 1.0)).collect() };
        Data {
            treated: boolean("treated").into_iter().map(Option::unwrap).collect(),
            site: col("site"),
            employment: col("employment"),
            condition: col("condition"),
            age: num("age").into_iter().map(Option::unwrap).collect(),
            phq9_0: num("phq9_0").into_iter().map(Option::unwrap).collect(),
            work13: boolean("work13"),
            work13_obs: boolean("work13_obs"),
            phq9_12: num("phq9_12"),
            phq9_12_obs: num("phq9_12_obs"),
            takeup: boolean("takeup"),
            days: num("days").into_iter().map(Option::unwrap).collect(),
            job: boolean("job").into_iter().map(Option::unwrap).collect(),
        }
    }

    fn factor(&self, name: &str) -> Factor {
        let v = match name {
            "site" => &self.site,
            "employment" => &self.employment,
            "condition" => &self.condition,
            _ => panic!("{name}"),
        };
        let labels: Vec<Option<&str>> = v.iter().map(|s| Some(s.as_str())).collect();
        Factor::from_labels(name, &labels)
    }

    fn strata(&self) -> Adjustment {
        Adjustment {
            factors: vec![self.factor("site"), self.factor("employment"), self.factor("condition")],
            covariates: vec![],
        }
    }

    fn covariate(&self, name: &str) -> Covariate {
        let v = match name {
            "age" => &self.age,
            "phq9_0" => &self.phq9_0,
            _ => panic!("{name}"),
        };
        Covariate::new(name, v.iter().map(|&x| Some(x)).collect())
    }
}

mod stats_binary;
mod stats_continuous;
mod stats_logistic;
mod stats_other;
mod stats_pooling;
mod stats_power;
mod stats_survival;
