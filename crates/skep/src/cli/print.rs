//! How jobs look on a terminal.

use chrono::Utc;
use skep_api::BulkJob;

use super::{CliError, OutputFormat};

fn yaml(v: &impl serde::Serialize) -> Result<String, CliError> {
    serde_yaml::to_string(v).map_err(|e| CliError::failed(e.to_string()))
}

fn json(v: &impl serde::Serialize) -> Result<String, CliError> {
    serde_json::to_string_pretty(v).map_err(|e| CliError::failed(e.to_string()))
}

/// One job as YAML or JSON (a table prints the list form).
pub fn job(job: &BulkJob, format: OutputFormat) -> Result<(), CliError> {
    match format {
        OutputFormat::Yaml => print!("{}", yaml(job)?),
        OutputFormat::Json => println!("{}", json(job)?),
        OutputFormat::Table => jobs(std::slice::from_ref(job), format)?,
    }
    Ok(())
}

/// A list of jobs: a table, or a YAML/JSON list document.
pub fn jobs(jobs: &[BulkJob], format: OutputFormat) -> Result<(), CliError> {
    match format {
        OutputFormat::Table => print!("{}", table(jobs)),
        OutputFormat::Yaml | OutputFormat::Json => {
            if let [one] = jobs {
                return job(one, format);
            }
            let list = serde_json::json!({"apiVersion": "skep.dev/v1", "kind": "BulkJobList", "items": jobs});
            match format {
                OutputFormat::Yaml => print!("{}", yaml(&list)?),
                _ => println!("{}", json(&list)?),
            }
        }
    }
    Ok(())
}

fn age(job: &BulkJob) -> String {
    let Some(t) = job.metadata.creation_timestamp else {
        return "-".into();
    };
    let s = (Utc::now() - t).num_seconds().max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The `skep get` table.
pub fn table(jobs: &[BulkJob]) -> String {
    let mut rows = vec![[
        "NAME".to_owned(),
        "PHASE".into(),
        "FILES".into(),
        "DONE".into(),
        "FAILED".into(),
        "REPLICAS".into(),
        "AGE".into(),
    ]];
    for j in jobs {
        let s = j.status();
        let phase = if j.is_deleting() {
            "Deleting".to_owned()
        } else {
            s.phase.to_string()
        };
        rows.push([
            j.metadata.name.clone(),
            phase,
            s.files.total.to_string(),
            s.files.finished().to_string(),
            s.files.failed.to_string(),
            format!("{}/{}", s.replicas.running, s.replicas.desired),
            age(j),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// `skep describe`.
pub fn describe(job: &BulkJob) {
    let s = job.status();
    let m = &job.metadata;
    println!("Name:          {}", m.name);
    println!("UID:           {}", job.uid());
    println!(
        "Generation:    {} (observed {})",
        job.generation(),
        s.observed_generation.map_or("-".into(), |g| g.to_string())
    );
    if !m.labels.is_empty() {
        let l: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("Labels:        {}", l.join(", "));
    }
    if let Some(t) = m.deletion_timestamp {
        println!("Deleting:      since {t}");
    }
    println!("Phase:         {}", s.phase);
    println!(
        "Source:        {}",
        job.spec.source.url.as_deref().unwrap_or(&job.spec.source.path)
    );
    println!(
        "Output:        {}",
        job.spec
            .output
            .url
            .as_deref()
            .or(job.spec.output.path.as_deref())
            .unwrap_or("(controller default)")
    );
    let e = &job.spec.engine;
    println!(
        "Engine:        tesseract {} (psm {}, {} dpi, pdf {}, autoRotate {}), {} pages per task",
        e.language_string(),
        e.page_seg_mode,
        e.dpi,
        e.pdf.as_str(),
        e.auto_rotate,
        job.spec.pages_per_task
    );
    let f = s.files;
    println!(
        "Files:         {} total, {} pending, {} dispatched, {} succeeded, {} failed",
        f.total, f.pending, f.dispatched, f.succeeded, f.failed
    );
    println!("Pages:         {} of {} done", s.pages.done, s.pages.total);
    println!(
        "Replicas:      {} desired, {} running (pool {})",
        s.replicas.desired, s.replicas.running, job.spec.scaling.pool
    );
    if !s.nodes_used.is_empty() {
        println!("Nodes used:    {}", s.nodes_used.join(", "));
    }
    if let Some(t) = s.start_time {
        println!("Started:       {t}");
    }
    if let Some(t) = s.completion_time {
        println!("Finished:      {t}");
    }
    if !s.conditions.is_empty() {
        println!("Conditions:");
        for c in &s.conditions {
            println!(
                "  {:<12} {:<7} {:<18} {}",
                c.type_,
                format!("{:?}", c.status),
                c.reason,
                c.message
            );
        }
    }
    if let Some(r) = &s.report {
        println!("Report:");
        println!(
            "  pages {}, words {}, mean confidence {:.1}",
            r.pages, r.words, r.mean_confidence
        );
        println!(
            "  wall {:.1}s, {:.2} files/s, {:.2} pages/s, OCR time {:.1}s",
            r.wall_seconds, r.files_per_second, r.pages_per_second, r.ocr_seconds
        );
        for (reason, n) in &r.failures_by_reason {
            println!("  failed ({reason}): {n}");
        }
    }
}

/// The few lines `skep run` ends with.
pub fn summary(job: &BulkJob) {
    let s = job.status();
    let f = s.files;
    println!(
        "bulkjob.skep.dev/{} {}: {} of {} files succeeded, {} failed",
        job.name(),
        s.phase,
        f.succeeded,
        f.total,
        f.failed
    );
    if let Some(r) = &s.report {
        println!(
            "  {} pages, {} words, mean confidence {:.1}, {:.1}s wall, {:.2} pages/s",
            r.pages, r.words, r.mean_confidence, r.wall_seconds, r.pages_per_second
        );
        for (reason, n) in &r.failures_by_reason {
            println!("  failed ({reason}): {n}");
        }
    }
    for c in s.conditions.iter().filter(|c| c.type_ == skep_api::condition::FAILED) {
        println!("  {}: {}", c.reason, c.message);
    }
    if let Some(out) = job.spec.output.url.as_ref().or(job.spec.output.path.as_ref()) {
        println!("  output: {out}");
    }
}
