//! `--runs R`: the benchmark R times, each run a process of its own (a fresh dev cluster,
//! operator and issuer), then the median of each figure that decides a target. One run's
//! operator/floor ratio moves by about 0.2 with the machine, as much as the gap to 1.5.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use super::Result;

/// What a run prints that is summed up, by the start of its line. The three ratios share
/// a prefix and come in this order: the first floor, with Events, with the creates.
const READY: &str = "all Ready after";
const RATIO: &str = "operator /";
const RATIOS: [&str; 3] = [
    "operator / floor",
    "operator / floor with Events",
    "operator / floor with creates",
];

pub fn repeat(runs: usize) -> Result<()> {
    let args = args_without_runs();
    let mut ready = Vec::new();
    let mut ratios: [Vec<f64>; 3] = Default::default();
    for run in 1..=runs {
        println!("--- run {run} of {runs}");
        let mut child = Command::new(std::env::current_exe()?)
            .args(&args)
            .stdout(Stdio::piped())
            .spawn()?;
        let output = BufReader::new(child.stdout.take().expect("piped"));
        let mut ratio = ratios.iter_mut();
        for line in output.lines() {
            let line = line?;
            println!("{line}");
            let figure = line
                .split_whitespace()
                .find_map(|word| word.parse::<f64>().ok());
            match figure {
                Some(f) if line.starts_with(READY) => ready.push(f),
                Some(f) if line.starts_with(RATIO) => {
                    ratio.next().ok_or("more ratios than expected")?.push(f);
                }
                _ => {}
            }
        }
        if !child.wait()?.success() {
            return Err(format!("run {run} failed").into());
        }
    }
    println!("--- medians of {runs} runs");
    println!(
        "{READY:<30}{:.1} s (runs: {})",
        median(&ready),
        listed(&ready)
    );
    for (label, values) in RATIOS.iter().zip(&ratios) {
        println!(
            "{label:<30}{:.2} (runs: {})",
            median(values),
            listed(values)
        );
    }
    Ok(())
}

/// This process's arguments, for the runs: without `--runs R`.
fn args_without_runs() -> Vec<String> {
    let mut args = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if arg == "--runs" {
            it.next();
        } else {
            args.push(arg);
        }
    }
    args
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn listed(values: &[f64]) -> String {
    let shown: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
    shown.join(", ")
}
