//! Black-box: the `skep` binary on generated documents — PDFs with and
//! without a text layer, turned scans, a multi-page TIFF, Office files and
//! broken ones — with every output format, checked with the real Tesseract,
//! Poppler and qpdf.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Workspace, results};
use quick_xml::Reader;
use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;
use serde_json::Value;
use skep_testkit::documents::{
    DocOptions, ScannedPdfOptions, ToolOutput, generate_documents, generate_scanned_pdfs, generate_text_pdf, run_tool,
};
use skep_testkit::office::generate_office;
use skep_testkit::{GeneratedFile, PageSize, cer, normalize_text};

/// A whole `skep run` is killed after this long.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// A Poppler or qpdf call is killed after this long.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
const TOOL_HINT: &str = "install poppler-utils and qpdf";
/// Between the pages of a file's text and of its ground truth.
const PAGE_BREAK: &str = "\n\x0c\n";
const EVERY_FORMAT: &str = "[txt, hocr, alto, tsv, pdf, report]";
/// Most a file's text may differ from its truth.
const MAX_CER: f64 = 0.05;
/// Most the text `pdftotext` extracts from a searchable PDF may differ.
const MAX_PDF_CER: f64 = 0.10;
/// Deepest element nesting accepted in an hOCR or ALTO file.
const MAX_XML_DEPTH: usize = 32;
/// Deepest folder nesting searched for leftovers under an output folder.
const MAX_DIR_DEPTH: usize = 16;
const TSV_HEADER: &str =
    "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext";

#[test]
fn documents_are_read_with_every_output_format() {
    let ws = workspace(|pages, truth| {
        let mut files = generate_documents(pages, truth, &DocOptions::default()).expect("documents");
        files.extend(generate_office(pages, truth, 1).expect("office documents"));
        files
    });
    let job = run_job(
        &ws,
        "documents",
        &format!("  output:\n    formats: {EVERY_FORMAT}\n  pagesPerTask: 2\n"),
    );
    assert_eq!(job["status"]["phase"], "Succeeded", "{job}");
    let out = ws.output("documents");
    let lines = one_line_per_file(&out, &ws.files);

    let mut checked = BTreeMap::<&str, usize>::new();
    for f in &ws.files {
        let line = &lines[&f.rel_path];
        let Some(reason) = &f.expect_failure else {
            check_good_file(&ws.path().join("pages"), &out, f, line);
            *checked.entry(input_kind(&f.rel_path)).or_default() += 1;
            continue;
        };
        assert_eq!(line["status"], "failed", "{}: {line}", f.rel_path);
        assert_eq!(line["reason"], reason.as_str(), "{}: {line}", f.rel_path);
        let error = line["error"].as_str().unwrap_or("");
        assert!(!error.trim().is_empty(), "{} has an error message: {line}", f.rel_path);
        // The message names the problem, never the file's contents.
        let bytes = std::fs::read(ws.path().join("pages").join(&f.rel_path)).expect("the bad file");
        for content in String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::trim)
            .filter(|l| l.len() >= 12)
        {
            assert!(
                !error.contains(content),
                "{}: the error quotes the file: {error}",
                f.rel_path
            );
        }
        for (folder, ext) in [
            ("text", "txt"),
            ("hocr", "hocr"),
            ("alto", "xml"),
            ("tsv", "tsv"),
            ("pdf", "pdf"),
        ] {
            let p = artefact(&out, folder, &f.rel_path, ext);
            assert!(!p.exists(), "a failed file has no {folder} output: {}", p.display());
        }
    }
    // Every kind of input was checked, not skipped.
    assert_eq!(
        checked,
        BTreeMap::from([("image", 3), ("office", 6), ("pdf", 4)]),
        "good files by kind"
    );

    assert_no_leftovers(&out);
    check_report(&out, &lines);
}

/// A 200-page PDF is split into 25 ranges and put back in page order. Its
/// first 199 pages are born-digital (distinct, known text: exact checks)
/// and its last is scanned: a PDF needing no OCR at all would be read whole,
/// so the scanned page is what makes it split, and it is read by OCR.
#[test]
fn a_200_page_pdf_split_into_25_ranges_is_assembled_in_order() {
    const PAGES: usize = 200;
    let rel = "long/numbered.pdf";
    let ws = workspace(|pages, truth| {
        let parts = pages.parent().expect("workspace").join("parts");
        let text = generate_text_pdf(&parts, &parts, "text.pdf", PAGES - 1, 9).expect("a long pdf");
        let opts = ScannedPdfOptions {
            files: 1,
            pages_per_file: 1,
            size: PageSize::Small,
            seed: 9,
        };
        let scan = generate_scanned_pdfs(&parts, &parts, &opts)
            .expect("a scanned page")
            .remove(0);
        let target = pages.join(rel);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        let (t, s) = (parts.join(&text.rel_path), parts.join(&scan.rel_path));
        tool(
            "qpdf",
            &[
                "--empty".as_ref(),
                "--pages".as_ref(),
                t.as_os_str(),
                s.as_os_str(),
                "--".as_ref(),
                target.as_os_str(),
            ],
        );
        let joined = format!(
            "{}{PAGE_BREAK}{}",
            text.truth.as_deref().expect("truth"),
            scan.truth.as_deref().expect("truth")
        );
        std::fs::create_dir_all(truth).expect("truth dir");
        vec![GeneratedFile {
            rel_path: rel.to_owned(),
            truth: Some(joined),
            pages: PAGES,
            expect_failure: None,
        }]
    });
    let job = run_job(
        &ws,
        "long",
        &format!("  output:\n    formats: {EVERY_FORMAT}\n  pagesPerTask: 8\n"),
    );
    assert_eq!(job["status"]["phase"], "Succeeded", "{job}");
    let out = ws.output("long");
    let lines = results(&out);
    assert_eq!(lines.len(), 1, "one line for one file");
    let line = &lines[0];
    assert_eq!(line["path"], rel);
    assert_eq!(line["status"], "succeeded", "{}", short(line));
    assert_eq!(line["pageCount"], PAGES, "{}", short(line));
    let numbers: Vec<u64> = page_infos(line)
        .iter()
        .map(|p| p["number"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(numbers, (1..=PAGES as u64).collect::<Vec<_>>(), "pages in order");
    let sources: Vec<&str> = page_infos(line)
        .iter()
        .map(|p| p["source"].as_str().unwrap_or(""))
        .collect();
    assert!(
        sources[..PAGES - 1].iter().all(|s| *s == "text"),
        "born-digital pages read from their text"
    );
    assert_eq!(sources[PAGES - 1], "ocr", "the scanned page OCR'd");
    assert!(
        job["status"]["pages"]["total"] == PAGES && job["status"]["pages"]["done"] == PAGES,
        "the status counts the split file's pages: {}",
        job["status"]["pages"]
    );

    let truth: Vec<&str> = ws.files[0].truth.as_deref().expect("truth").split(PAGE_BREAK).collect();
    let text = line["text"].as_str().expect("text");
    let text_pages: Vec<&str> = text.split(PAGE_BREAK).collect();
    assert_eq!(text_pages.len(), PAGES, "200 pages of text");
    let last = PAGES - 1;
    for (n, (got, want)) in text_pages.iter().zip(&truth).enumerate().take(last) {
        assert_eq!(got, want, "page {} of the text", n + 1);
    }
    let c = cer(text_pages[last], truth[last]);
    assert!(c <= 0.05, "the scanned page reads at CER {c:.4}");
    let landed = std::fs::read_to_string(artefact(&out, "text", rel, "txt")).expect("the text file");
    assert_eq!(landed, text);

    // The landed layouts hold the ranges' pages in page order.
    let truth_words: Vec<String> = truth.iter().map(|t| normalize_text(t)).collect();
    let hocr = check_hocr(&artefact(&out, "hocr", rel, "hocr"), PAGES);
    let alto = check_alto(&artefact(&out, "alto", rel, "xml"), PAGES);
    let tsv = check_tsv(&artefact(&out, "tsv", rel, "tsv"), PAGES);
    for (format, pages) in [("hocr", hocr), ("alto", alto), ("tsv", tsv)] {
        for (n, (words, want)) in pages.iter().zip(&truth_words).enumerate().take(last) {
            assert_eq!(&words.join(" "), want, "{format} page {}", n + 1);
        }
        let c = cer(&pages[last].join(" "), &truth_words[last]);
        assert!(c <= 0.05, "{format}: the scanned page's words at CER {c:.4}");
    }
    let pdf = artefact(&out, "pdf", rel, "pdf");
    // NB: compared page by page: a CER over the whole file is quadratic.
    check_pdf_pages(&pdf, &[0; PAGES], Some(&ws.path().join("pages").join(rel)));
    let pdf_pages = pdftotext_pages(&pdf);
    assert_eq!(pdf_pages.len(), PAGES);
    for (n, (got, want)) in pdf_pages.iter().zip(&truth_words).enumerate().take(last) {
        assert_eq!(&normalize_text(got), want, "page {} of the searchable pdf", n + 1);
    }
    let c = cer(&pdf_pages[last], &truth_words[last]);
    assert!(c <= 0.10, "the scanned page's invisible text at CER {c:.4}");
    assert_no_leftovers(&out);
}

#[test]
fn pdf_mode_text_never_ocrs_and_ocr_always_does() {
    let ws = workspace(|pages, truth| generate_documents(pages, truth, &DocOptions::default()).expect("documents"));
    let truth_of = |rel: &str| -> Vec<String> {
        let f = ws.files.iter().find(|f| f.rel_path == rel).expect("generated");
        f.truth
            .as_deref()
            .expect("truth")
            .split(PAGE_BREAK)
            .map(str::to_owned)
            .collect()
    };

    let job = run_job(
        &ws,
        "text-only",
        "    include: [docs/scanned.pdf, docs/mixed.pdf]\n  engine:\n    pdf: text\n",
    );
    assert_eq!(job["status"]["phase"], "Succeeded", "{job}");
    let lines = results(&ws.output("text-only"));
    assert_eq!(lines.len(), 2);
    let by_path: BTreeMap<&str, &Value> = lines.iter().map(|l| (l["path"].as_str().unwrap_or(""), l)).collect();
    let scanned = by_path["docs/scanned.pdf"];
    assert_eq!(scanned["status"], "succeeded", "{}", short(scanned));
    assert_eq!(scanned["pageCount"], 3);
    assert_eq!(sources(scanned), ["text", "text", "text"], "no page was OCR'd");
    let text = scanned["text"].as_str().expect("text");
    assert!(normalize_text(text).is_empty(), "a scan has no text layer: {text:?}");
    assert_eq!(scanned["words"], 0);
    // In a mixed file, the text pages still read and the scans stay empty.
    let mixed = by_path["docs/mixed.pdf"];
    assert_eq!(sources(mixed), ["text", "text", "text", "text"]);
    let pages: Vec<String> = mixed["text"]
        .as_str()
        .expect("text")
        .split(PAGE_BREAK)
        .map(normalize_text)
        .collect();
    let truth = truth_of("docs/mixed.pdf");
    assert_eq!(pages.len(), 4, "{pages:?}");
    assert_eq!(pages[0], normalize_text(&truth[0]));
    assert_eq!(pages[2], normalize_text(&truth[2]));
    assert!(pages[1].is_empty() && pages[3].is_empty(), "{pages:?}");

    let job = run_job(
        &ws,
        "ocr-only",
        "    include: [docs/born-digital.pdf]\n  engine:\n    pdf: ocr\n",
    );
    assert_eq!(job["status"]["phase"], "Succeeded", "{job}");
    let lines = results(&ws.output("ocr-only"));
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(line["status"], "succeeded", "{}", short(line));
    assert_eq!(sources(line), ["ocr", "ocr", "ocr"], "every page OCR'd");
    assert!(
        page_infos(line)
            .iter()
            .all(|p| p["confidence"].as_f64().is_some_and(|c| c < 100.0)),
        "OCR confidence, not a text layer's 100: {}",
        short(line)
    );
    let truth = truth_of("docs/born-digital.pdf").join(PAGE_BREAK);
    let e = cer(&truth, line["text"].as_str().expect("text"));
    eprintln!("born-digital.pdf read by OCR: CER {e:.4}");
    assert!(e <= MAX_CER, "CER {e:.4}");
}

/// The checks above would see what they look for.
#[test]
fn the_output_checks_catch_bad_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deep = dir.path().join("hocr/docs");
    std::fs::create_dir_all(deep.join(".skep-staging/uid")).expect("mkdir");
    std::fs::write(deep.join(".a.pdf.hocr.1234.tmp-skep"), "x").expect("write");
    assert_eq!(leftovers(dir.path()).len(), 2);

    let fails = |f: &dyn Fn()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err();
    for xml in [
        "<a><b></a>",
        "<a></a><b/>",
        "<a>&unknown;</a>",
        "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>",
        "<a>",
    ] {
        assert!(fails(&|| drop(parse_xml(xml, "test"))), "{xml} is refused");
    }
    let words = parse_xml("<a><w t=\"1\">A&amp;B</w><w>&#67;</w></a>", "test");
    assert_eq!((words[1].text.as_str(), words[2].text.as_str()), ("A&B", "C"));

    let tsv = dir.path().join("x.tsv");
    let page = |n: u32| format!("1\t{n}\t0\t0\t0\t0\t0\t0\t9\t9\t-1\t\n5\t{n}\t1\t1\t1\t1\t0\t0\t1\t1\t96.5\tw{n}\n");
    std::fs::write(&tsv, format!("{TSV_HEADER}\n{}{}", page(1), page(2))).expect("write");
    assert_eq!(check_tsv(&tsv, 2), [vec!["w1".to_owned()], vec!["w2".to_owned()]]);
    std::fs::write(&tsv, format!("{TSV_HEADER}\n{}{}", page(2), page(1))).expect("write");
    assert!(fails(&|| drop(check_tsv(&tsv, 2))), "pages out of order are refused");

    let hocr = dir.path().join("x.hocr");
    let page = |n: u32, word: &str| {
        format!(
            "<div class=\"ocr_page\" id=\"page_{n}\" title=\"bbox 0 0 100 50; ppageno {}; x\">\
             <span class=\"ocrx_word\" title=\"{word}\">w{n}</span></div>",
            n - 1
        )
    };
    let doc = |body: String| format!("<html><body>{body}</body></html>");
    std::fs::write(&hocr, doc(page(1, "bbox 1 2 30 40") + &page(2, "bbox 0 0 100 50"))).expect("write");
    assert_eq!(check_hocr(&hocr, 2), [vec!["w1".to_owned()], vec!["w2".to_owned()]]);
    for bad in [
        doc(page(2, "bbox 1 2 3 4") + &page(1, "bbox 1 2 3 4")),
        doc(page(1, "bbox 1 2 3 4; x_wconf 9") + &page(2, "bbox 1 2 300 4")),
        doc(page(1, "x_wconf 9") + &page(2, "bbox 1 2 3 4")),
    ] {
        std::fs::write(&hocr, &bad).expect("write");
        assert!(fails(&|| drop(check_hocr(&hocr, 2))), "{bad}");
    }
}

/// A workspace whose `pages/` and `truth/` `generate` fills.
fn workspace(generate: impl FnOnce(&Path, &Path) -> Vec<GeneratedFile>) -> Workspace {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = generate(&dir.path().join("pages"), &dir.path().join("truth"));
    Workspace { dir, files }
}

/// Runs `skep run` on job `name` (the lines `spec` under `spec:`, after
/// its `source`), with two local workers and the in-process queue; returns
/// the final job. Panics unless it exits 0 within [`RUN_TIMEOUT`].
fn run_job(ws: &Workspace, name: &str, spec: &str) -> Value {
    let job = ws.job(name, spec);
    let store = ws.store();
    let job = job.to_str().expect("utf-8 temp path");
    let args = [
        "--store",
        &store,
        "run",
        "-f",
        job,
        "-o",
        "json",
        "--workers",
        "2",
        "--queue",
        "memory:",
        "--quiet",
    ];
    let started = Instant::now();
    let out = run_tool(env!("CARGO_BIN_EXE_skep"), &args, RUN_TIMEOUT, "cargo builds it").expect("skep runs");
    eprintln!("job {name}: skep run took {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("-o json prints the job ({e}): {}", output_text(&out)))
}

fn output_text(o: &ToolOutput) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        o.stderr_text()
    )
}

/// The results, keyed by path: exactly one line for each generated file,
/// and none for anything else.
fn one_line_per_file(out: &Path, files: &[GeneratedFile]) -> BTreeMap<String, Value> {
    let mut by_path = BTreeMap::new();
    for line in results(out) {
        let path = line["path"].as_str().expect("a path").to_owned();
        assert!(by_path.insert(path.clone(), line).is_none(), "{path} has two lines");
    }
    let mut expected: Vec<&str> = files.iter().map(|f| f.rel_path.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(by_path.keys().map(String::as_str).collect::<Vec<_>>(), expected);
    by_path
}

/// `pdf`, `image` or `office`, from the generated file's name.
fn input_kind(rel: &str) -> &'static str {
    match rel.rsplit_once('.').map(|(_, ext)| ext) {
        Some("pdf") => "pdf",
        Some("png" | "tif") => "image",
        _ => "office",
    }
}

/// Where `source` of every page of a good generated file must come from.
fn expected_sources(rel: &str, pages: usize) -> Vec<&'static str> {
    match rel {
        "docs/born-digital.pdf" => vec!["text"; pages],
        "docs/mixed.pdf" => (0..pages).map(|k| if k % 2 == 0 { "text" } else { "ocr" }).collect(),
        _ if input_kind(rel) == "office" => vec!["text"; pages],
        _ => vec!["ocr"; pages],
    }
}

fn check_good_file(pages_dir: &Path, out: &Path, f: &GeneratedFile, line: &Value) {
    let rel = f.rel_path.as_str();
    let truth = f.truth.as_deref().expect("a good file has truth");
    assert_eq!(line["status"], "succeeded", "{rel}: {}", short(line));
    let text = line["text"].as_str().expect("text");
    let e = cer(truth, text);
    eprintln!("{rel}: CER {e:.4}");
    assert!(e <= MAX_CER, "{rel}: CER {e:.4} over {MAX_CER}");
    assert_eq!(line["pageCount"], f.pages, "{rel}: {}", short(line));
    let infos = page_infos(line);
    let numbers: Vec<u64> = infos.iter().map(|p| p["number"].as_u64().unwrap_or(0)).collect();
    assert_eq!(numbers, (1..=f.pages as u64).collect::<Vec<_>>(), "{rel}: page numbers");
    assert_eq!(sources(line), expected_sources(rel, f.pages), "{rel}: page sources");
    let rotations: Vec<u64> = infos
        .iter()
        .map(|p| p["rotation"].as_u64().unwrap_or(u64::MAX))
        .collect();
    match rel {
        // NB: generated turned 90° clockwise, so upright after 270° more.
        "docs/sideways.pdf" | "docs/sideways.png" => assert_eq!(rotations, [270], "{rel}"),
        "docs/upside-down.png" => assert_eq!(rotations, [180], "{rel}"),
        _ => assert!(rotations.iter().all(|&r| r == 0), "{rel}: upright pages: {rotations:?}"),
    }
    let txt = std::fs::read_to_string(artefact(out, "text", rel, "txt")).expect("a .txt per succeeded file");
    assert_eq!(txt, text, "{rel}: the .txt is the result's text");

    if input_kind(rel) == "office" {
        return;
    }
    let text_words = text.split_whitespace().count();
    let hocr = check_hocr(&artefact(out, "hocr", rel, "hocr"), f.pages);
    let alto = check_alto(&artefact(out, "alto", rel, "xml"), f.pages);
    let tsv = check_tsv(&artefact(out, "tsv", rel, "tsv"), f.pages);
    for (format, pages) in [("hocr", &hocr), ("alto", &alto), ("tsv", &tsv)] {
        let words: usize = pages.iter().map(Vec::len).sum();
        eprintln!("{rel}: {format} {words} words, text {text_words}");
        assert!(
            words.abs_diff(text_words) <= (text_words / 20).max(2),
            "{rel}: {format} has {words} words, the text {text_words}"
        );
    }
    let source = (input_kind(rel) == "pdf").then(|| pages_dir.join(rel));
    let pdf = artefact(out, "pdf", rel, "pdf");
    check_pdf_pages(&pdf, &rotations, source.as_deref());
    let e = cer(truth, &pdftotext_pages(&pdf).join("\n"));
    eprintln!("{rel}: searchable pdf CER {e:.4}");
    assert!(e <= MAX_PDF_CER, "{rel}: the searchable pdf reads with CER {e:.4}");
}

/// `pdf` passes `qpdf --check` and has one page per entry of
/// `rotations` (each page's `rotation` in the results), each shown upright:
/// with a `source` PDF, the source's page at its size, turned by its
/// rotation; without (a scan), the image turned upright, which for the
/// generated scans (all [`skep_testkit::PageSize::Small`]) is wider than tall.
fn check_pdf_pages(pdf: &Path, rotations: &[u64], source: Option<&Path>) {
    let what = pdf.display();
    let check = tool("qpdf", &["--check".as_ref(), pdf.as_os_str()]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "qpdf --check {what}: {}",
        output_text(&check)
    );
    let pages = pdf_pages(pdf);
    assert_eq!(pages.len(), rotations.len(), "{what}: pages");
    match source {
        Some(source) => {
            let source = pdf_pages(source);
            let sizes = |pages: &[PdfPageBox]| pages.iter().map(|p| p.size.clone()).collect::<Vec<_>>();
            assert_eq!(sizes(&pages), sizes(&source), "{what}: the source's page sizes");
            let turned: Vec<u64> = source.iter().zip(rotations).map(|(p, r)| (p.rot + r) % 360).collect();
            let rots: Vec<u64> = pages.iter().map(|p| p.rot).collect();
            assert_eq!(rots, turned, "{what}: pages turned as they were for OCR");
        }
        None => {
            for (n, page) in pages.iter().enumerate() {
                let (w, h) = page.shown();
                assert!(w > h, "{what}: page {} is shown upright: {page:?}", n + 1);
            }
        }
    }
}

/// A page as `pdfinfo` describes it.
#[derive(Debug)]
struct PdfPageBox {
    /// As printed: `"297.6 x 211.2 pts"`.
    size: String,
    /// `/Rotate`, clockwise degrees.
    rot: u64,
}

impl PdfPageBox {
    /// Width and height in points as the page is shown (after `rot`).
    fn shown(&self) -> (f64, f64) {
        let numbers: Vec<f64> = self.size.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        let [w, h] = numbers[..] else {
            panic!("not a page size: {self:?}");
        };
        if self.rot % 180 == 90 { (h, w) } else { (w, h) }
    }
}

/// Every page of `pdf`, as `pdfinfo` describes it.
fn pdf_pages(pdf: &Path) -> Vec<PdfPageBox> {
    let info = |extra: &[&str]| -> BTreeMap<String, String> {
        let mut args: Vec<&std::ffi::OsStr> = extra.iter().map(|a| a.as_ref()).collect();
        args.push(pdf.as_os_str());
        let out = tool("pdfinfo", &args);
        assert!(out.status.success(), "pdfinfo {}: {}", pdf.display(), output_text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect()
    };
    let count: usize = info(&[])["Pages"].parse().expect("a page count");
    let last = count.to_string();
    let pages = info(&["-f", "1", "-l", &last]);
    let field = |n: usize, name: &str| {
        pages
            .get(&format!("Page {n:>4} {name}"))
            .cloned()
            .unwrap_or_else(|| panic!("{}: no {name} for page {n}", pdf.display()))
    };
    (1..=count)
        .map(|n| PdfPageBox {
            size: field(n, "size"),
            rot: field(n, "rot").parse().expect("a rotation"),
        })
        .collect()
}

/// The text of each page `pdftotext` reads from `pdf`.
fn pdftotext_pages(pdf: &Path) -> Vec<String> {
    let out = tool("pdftotext", &[pdf.as_os_str(), "-".as_ref()]);
    assert!(
        out.status.success(),
        "pdftotext {}: {}",
        pdf.display(),
        output_text(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // NB: pdftotext ends every page with a form feed.
    let mut pages: Vec<String> = text.split('\x0c').map(str::to_owned).collect();
    assert!(
        pages.pop().is_some_and(|rest| rest.trim().is_empty()),
        "text after the last page"
    );
    pages
}

fn tool(program: &str, args: &[&std::ffi::OsStr]) -> ToolOutput {
    run_tool(program, args, TOOL_TIMEOUT, TOOL_HINT).unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// An element of a parsed XML file.
#[derive(Debug)]
struct Element {
    name: String,
    attrs: BTreeMap<String, String>,
    /// The text directly inside it (not in child elements).
    text: String,
    parent: Option<usize>,
}

impl Element {
    fn attr(&self, name: &str) -> &str {
        self.attrs
            .get(name)
            .map_or_else(|| panic!("<{}> has no {name}: {self:?}", self.name), String::as_str)
    }

    fn number(&self, name: &str) -> u32 {
        self.attr(name)
            .parse()
            .unwrap_or_else(|_| panic!("<{}> {name} is not a whole number: {self:?}", self.name))
    }
}

/// Every element of a well-formed XML document, in document order; panics
/// on malformed XML, an internal DTD subset, an unknown entity, nesting
/// deeper than [`MAX_XML_DEPTH`], or not exactly one root.
fn parse_xml(xml: &str, what: &str) -> Vec<Element> {
    let mut reader = Reader::from_str(xml);
    let mut elements: Vec<Element> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let mut roots = 0;
    loop {
        let event = reader
            .read_event()
            .unwrap_or_else(|e| panic!("{what}: malformed xml at byte {}: {e}", reader.error_position()));
        let text = |elements: &mut Vec<Element>, t: &str| match open.last() {
            Some(&i) => elements[i].text.push_str(t),
            None => assert!(t.trim().is_empty(), "{what}: text outside the root"),
        };
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                let mut attrs = BTreeMap::new();
                for a in start.attributes() {
                    let a = a.unwrap_or_else(|e| panic!("{what}: malformed attribute: {e}"));
                    let value = a
                        .normalized_value(XmlVersion::Implicit1_0)
                        .unwrap_or_else(|e| panic!("{what}: malformed attribute value: {e}"));
                    attrs.insert(AsRef::<str>::as_ref(&a.key).to_owned(), value.into_owned());
                }
                if open.is_empty() {
                    roots += 1;
                }
                elements.push(Element {
                    name: AsRef::<str>::as_ref(&start.local_name()).to_owned(),
                    attrs,
                    text: String::new(),
                    parent: open.last().copied(),
                });
                if matches!(event, Event::Start(_)) {
                    open.push(elements.len() - 1);
                    assert!(
                        open.len() <= MAX_XML_DEPTH,
                        "{what}: nested deeper than {MAX_XML_DEPTH}"
                    );
                }
            }
            Event::End(_) => {
                open.pop();
            }
            Event::Text(t) => text(&mut elements, &t.xml10_content()),
            Event::CData(t) => text(&mut elements, &t.xml10_content()),
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref().ok().flatten().map(String::from)
                } else {
                    resolve_predefined_entity(&r).map(str::to_owned)
                };
                text(
                    &mut elements,
                    &c.unwrap_or_else(|| panic!("{what}: unknown reference &{};", &*r)),
                );
            }
            Event::DocType(d) => assert!(!d.contains('['), "{what}: an internal DTD subset"),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    assert!(open.is_empty(), "{what}: the document ends inside an element");
    assert_eq!(roots, 1, "{what}: one root element");
    elements
}

/// The page element `i` is in (the nearest ancestor that `is_page`).
fn page_of(elements: &[Element], mut i: usize, is_page: impl Fn(&Element) -> bool) -> Option<usize> {
    while let Some(parent) = elements[i].parent {
        if is_page(&elements[parent]) {
            return Some(parent);
        }
        i = parent;
    }
    None
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Checks an hOCR file of `pages` pages (`ocr_page`s numbered 1.. in
/// order; `ocrx_word`s inside them with a `bbox` in their page) and
/// returns the words of each page.
fn check_hocr(path: &Path, pages: usize) -> Vec<Vec<String>> {
    let what = path.display().to_string();
    let elements = parse_xml(&read(path), &what);
    assert_eq!(elements[0].name, "html", "{what}: an XHTML document");
    let class = |e: &Element| e.attrs.get("class").map_or("", String::as_str).to_owned();
    let is_page = |e: &Element| e.attrs.get("class").is_some_and(|c| c == "ocr_page");
    let page_ids: Vec<usize> = (0..elements.len()).filter(|&i| is_page(&elements[i])).collect();
    assert_eq!(page_ids.len(), pages, "{what}: ocr_page elements");
    let mut sizes = Vec::new();
    for (k, &i) in page_ids.iter().enumerate() {
        let page = &elements[i];
        assert_eq!(page.attr("id"), format!("page_{}", k + 1), "{what}: pages in order");
        let title = page.attr("title");
        assert!(title.contains(&format!("ppageno {k};")), "{what}: {title}");
        let [x0, y0, x1, y1] = bbox(title).unwrap_or_else(|| panic!("{what}: a page without a bbox: {title}"));
        assert!(x0 == 0 && y0 == 0 && x1 > 0 && y1 > 0, "{what}: page bbox {title}");
        sizes.push((x1, y1));
    }
    let mut words = vec![Vec::new(); pages];
    for (i, e) in elements.iter().enumerate().filter(|(_, e)| class(e) == "ocrx_word") {
        let page = page_of(&elements, i, is_page).unwrap_or_else(|| panic!("{what}: a word outside a page"));
        let k = page_ids.iter().position(|&p| p == page).unwrap_or(usize::MAX);
        let title = e.attr("title");
        let [x0, y0, x1, y1] = bbox(title).unwrap_or_else(|| panic!("{what}: a word without a bbox: {title}"));
        let (w, h) = sizes[k];
        assert!(
            x0 <= x1 && y0 <= y1 && x1 <= w && y1 <= h,
            "{what}: word box {title} in a {w}x{h} page"
        );
        let text = e.text.trim();
        assert!(!text.is_empty(), "{what}: an empty word");
        words[k].push(text.to_owned());
    }
    words
}

/// The `bbox x0 y0 x1 y1` property of an hOCR title.
fn bbox(title: &str) -> Option<[u32; 4]> {
    let values = title.split(';').find_map(|p| p.trim().strip_prefix("bbox "))?;
    let numbers: Vec<u32> = values
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    numbers.try_into().ok()
}

/// Checks an ALTO v4 file of `pages` pages (`Page`s numbered 1.. in
/// order; `String`s inside them with `HPOS/VPOS/WIDTH/HEIGHT` in their
/// page) and returns the words of each page.
fn check_alto(path: &Path, pages: usize) -> Vec<Vec<String>> {
    let what = path.display().to_string();
    let elements = parse_xml(&read(path), &what);
    assert_eq!(elements[0].name, "alto", "{what}: an ALTO document");
    assert_eq!(
        elements[0].attr("xmlns"),
        "http://www.loc.gov/standards/alto/ns-v4#",
        "{what}: ALTO v4"
    );
    let is_page = |e: &Element| e.name == "Page";
    let page_ids: Vec<usize> = (0..elements.len()).filter(|&i| is_page(&elements[i])).collect();
    assert_eq!(page_ids.len(), pages, "{what}: Page elements");
    for (k, &i) in page_ids.iter().enumerate() {
        assert_eq!(
            elements[i].number("PHYSICAL_IMG_NR") as usize,
            k + 1,
            "{what}: pages in order"
        );
        assert_eq!(elements[i].attr("ID"), format!("page_{}", k + 1), "{what}");
    }
    let mut words = vec![Vec::new(); pages];
    for (i, e) in elements.iter().enumerate().filter(|(_, e)| e.name == "String") {
        let page = page_of(&elements, i, is_page).unwrap_or_else(|| panic!("{what}: a String outside a Page"));
        let k = page_ids.iter().position(|&p| p == page).unwrap_or(usize::MAX);
        let (w, h) = (elements[page].number("WIDTH"), elements[page].number("HEIGHT"));
        let [x, y, dx, dy] = ["HPOS", "VPOS", "WIDTH", "HEIGHT"].map(|a| e.number(a));
        assert!(x + dx <= w && y + dy <= h, "{what}: String box {e:?} in a {w}x{h} page");
        let content = e.attr("CONTENT").trim();
        assert!(!content.is_empty(), "{what}: an empty String");
        words[k].push(content.to_owned());
    }
    words
}

/// Checks a TSV file of `pages` pages (Tesseract's header; rows of 12
/// columns; a level-1 row per page, numbered 1.. in order, before its
/// rows) and returns the words (level 5) of each page.
fn check_tsv(path: &Path, pages: usize) -> Vec<Vec<String>> {
    let what = path.display().to_string();
    let tsv = read(path);
    let mut rows = tsv.lines();
    assert_eq!(rows.next(), Some(TSV_HEADER), "{what}: the header");
    let mut words: Vec<Vec<String>> = Vec::new();
    let mut n_rows = 0;
    for row in rows {
        n_rows += 1;
        let cols: Vec<&str> = row.split('\t').collect();
        assert_eq!(cols.len(), 12, "{what}: row {n_rows} has 12 columns: {row:?}");
        let numbers: Vec<u32> = cols[..10]
            .iter()
            .map(|c| c.parse().unwrap_or_else(|_| panic!("{what}: row {n_rows}: {row:?}")))
            .collect();
        let (level, page) = (numbers[0], numbers[1] as usize);
        if level == 1 {
            assert_eq!(page, words.len() + 1, "{what}: pages in order");
            words.push(Vec::new());
            continue;
        }
        assert_eq!(page, words.len(), "{what}: row {n_rows} is on its page");
        if level == 5 {
            let conf: f64 = cols[10].parse().unwrap_or(-1.0);
            assert!((0.0..=100.0).contains(&conf), "{what}: word confidence {row:?}");
            assert!(!cols[11].trim().is_empty(), "{what}: an empty word");
            words[page - 1].push(cols[11].trim().to_owned());
        }
    }
    assert_eq!(words.len(), pages, "{what}: pages");
    words
}

fn artefact(out: &Path, folder: &str, rel: &str, ext: &str) -> PathBuf {
    out.join(folder).join(format!("{rel}.{ext}"))
}

fn page_infos(line: &Value) -> &[Value] {
    line["pages"].as_array().map_or(&[], Vec::as_slice)
}

fn sources(line: &Value) -> Vec<&str> {
    page_infos(line)
        .iter()
        .map(|p| p["source"].as_str().unwrap_or("?"))
        .collect()
}

/// A result line without its text, for messages.
fn short(line: &Value) -> Value {
    let mut l = line.clone();
    if let Some(o) = l.as_object_mut() {
        o.remove("text");
    }
    l
}

/// No staging folder and no temporary file anywhere under `out`.
fn assert_no_leftovers(out: &Path) {
    let found = leftovers(out);
    assert!(found.is_empty(), "left behind: {found:?}");
}

/// Staging folders and temporary files under `out`.
fn leftovers(out: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
        assert!(depth <= MAX_DIR_DEPTH, "{}: folders nested too deep", dir.display());
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a folder entry").path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name == ".skep-staging" || name.ends_with(".tmp-skep") {
                found.push(path.clone());
            }
            if path.is_dir() && !path.is_symlink() {
                walk(&path, depth + 1, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(out, 0, &mut found);
    found
}

/// `report.json` agrees with the result lines.
fn check_report(out: &Path, lines: &BTreeMap<String, Value>) {
    let report: Value = serde_json::from_str(&read(&out.join("report.json"))).expect("report.json is JSON");
    let succeeded: Vec<&Value> = lines.values().filter(|l| l["status"] == "succeeded").collect();
    let mut by_reason = BTreeMap::<String, u64>::new();
    for l in lines.values().filter(|l| l["status"] == "failed") {
        *by_reason
            .entry(l["reason"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    let sum = |key: &str| -> u64 { succeeded.iter().map(|l| l[key].as_u64().unwrap_or(0)).sum() };
    assert_eq!(report["files"], lines.len(), "{report}");
    assert_eq!(report["succeeded"], succeeded.len(), "{report}");
    assert_eq!(report["failed"], lines.len() - succeeded.len(), "{report}");
    assert_eq!(report["pages"], sum("pageCount"), "{report}");
    assert_eq!(report["words"], sum("words"), "{report}");
    assert_eq!(
        report["failuresByReason"],
        serde_json::to_value(&by_reason).expect("json"),
        "{report}"
    );
}
