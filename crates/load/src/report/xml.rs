//! XML outputs: JUnit (per label or per criterion) and Taurus's final-stats `dump-xml`,
//! written with quick-xml (which escapes); [`printable`] first turns the control characters
//! XML cannot hold into spaces.

use std::io;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use crate::markup::printable;
use crate::report::Report;
use crate::stats::Summary;

type Xml = Writer<Vec<u8>>;

/// An XML document: the declaration, then what `body` writes, two spaces per level.
fn document(body: impl FnOnce(&mut Xml) -> io::Result<()>) -> String {
    let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
    let written = writer
        .write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .and_then(|()| body(&mut writer));
    // Writing into memory cannot fail; an error would leave the document short, not wrong.
    let _ = written;
    let mut text = String::from_utf8(writer.into_inner()).unwrap_or_default();
    text.push('\n');
    text
}

/// `<tag>text</tag>`.
fn text_element(writer: &mut Xml, tag: &str, text: &str) -> io::Result<()> {
    writer
        .create_element(tag)
        .write_text_content(BytesText::new(&printable(text)))?;
    Ok(())
}

/// One JUnit test case, and why it failed.
struct Case {
    classname: &'static str,
    name: String,
    time: Option<String>,
    failure: Option<Failure>,
}

struct Failure {
    message: String,
    kind: &'static str,
    text: Option<String>,
}

impl Case {
    fn write(&self, writer: &mut Xml) -> io::Result<()> {
        let name = printable(&self.name);
        let mut element = writer
            .create_element("testcase")
            .with_attribute(("classname", self.classname))
            .with_attribute(("name", name.as_ref()));
        if let Some(time) = &self.time {
            element = element.with_attribute(("time", time.as_str()));
        }
        let Some(failure) = &self.failure else {
            element.write_empty()?;
            return Ok(());
        };
        element.write_inner_content(|writer| {
            let message = printable(&failure.message);
            let element = writer
                .create_element("failure")
                .with_attribute(("message", message.as_ref()))
                .with_attribute(("type", failure.kind));
            match &failure.text {
                Some(text) => element.write_text_content(BytesText::new(&printable(text)))?,
                None => element.write_empty()?,
            };
            Ok(())
        })?;
        Ok(())
    }
}

/// A test case per pass/fail criterion.
fn criteria_cases(report: &Report) -> Vec<Case> {
    report
        .criteria
        .iter()
        .map(|outcome| Case {
            classname: "peregrine.passfail",
            name: outcome.criterion.clone(),
            time: None,
            failure: outcome.failed.then(|| Failure {
                message: outcome.verdict.clone(),
                kind: "pass/fail criteria triggered",
                text: None,
            }),
        })
        .collect()
}

/// A test case per label, failed when any of its samples failed.
fn label_cases(report: &Report) -> Vec<Case> {
    report
        .labels
        .iter()
        .map(|label| {
            let s = &label.summary;
            let errors: Vec<String> = report
                .errors
                .iter()
                .filter(|e| e.label == label.label)
                .map(|e| format!("{} × {}", e.count, e.message))
                .collect();
            Case {
                classname: "peregrine.labels",
                name: label.label.clone(),
                time: Some(format!("{:.6}", s.avg_rt)),
                failure: (s.failures > 0).then(|| Failure {
                    message: format!("{} of {} samples failed", s.failures, s.samples),
                    kind: "errors",
                    text: Some(errors.join("\n")),
                }),
            }
        })
        .collect()
}

/// JUnit XML: a test case per label (`sample-labels`), or per criterion (`pass-fail`).
pub fn junit(report: &Report, pass_fail: bool) -> String {
    let (name, cases) = if pass_fail {
        ("peregrine_pass_fail", criteria_cases(report))
    } else {
        ("peregrine_sample_labels", label_cases(report))
    };
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let (tests, failures) = (cases.len().to_string(), failures.to_string());
    let time = format!("{:.3}", report.duration_seconds);
    document(|writer| {
        writer
            .create_element("testsuites")
            .write_inner_content(|writer| {
                writer
                    .create_element("testsuite")
                    .with_attributes([
                        ("name", name),
                        ("package_name", "peregrine"),
                        ("tests", tests.as_str()),
                        ("failures", failures.as_str()),
                        ("time", time.as_str()),
                    ])
                    .write_inner_content(|writer| {
                        cases.iter().try_for_each(|case| case.write(writer))
                    })?;
                Ok(())
            })?;
        Ok(())
    })
}

/// Taurus's `dump-xml`: `<FinalStatus>` with a `<Group>` per label and one for all.
pub fn final_status(report: &Report) -> String {
    document(|writer| {
        writer
            .create_element("FinalStatus")
            .write_inner_content(|writer| {
                text_element(
                    writer,
                    "TestDuration",
                    &format!("{:.3}", report.duration_seconds),
                )?;
                let users = super::tables::peak_users(report);
                for label in &report.labels {
                    group(writer, &label.label, &label.summary, users)?;
                }
                group(writer, "", &report.overall, users)
            })?;
        Ok(())
    })
}

fn group(writer: &mut Xml, label: &str, s: &Summary, users: u64) -> io::Result<()> {
    let label = printable(label);
    writer
        .create_element("Group")
        .with_attribute(("label", label.as_ref()))
        .write_inner_content(|writer| {
            let figures = [
                ("avg_ct", format!("{:.5}", s.avg_ct)),
                ("avg_lt", format!("{:.5}", s.avg_lt)),
                ("avg_rt", format!("{:.5}", s.avg_rt)),
                ("bytes", s.bytes.to_string()),
                ("concurrency", users.to_string()),
                ("fail", s.failures.to_string()),
                ("stdev_rt", format!("{:.5}", s.stdev_rt)),
                ("succ", (s.samples - s.failures).to_string()),
                ("throughput", s.samples.to_string()),
            ];
            for (name, value) in &figures {
                kpi(writer, name, None, value)?;
            }
            for p in &s.percentiles {
                let level = format!("{:.1}", p.level);
                kpi(writer, "perc", Some(&level), &format!("{:.5}", p.seconds))?;
            }
            for (code, count) in &s.codes {
                kpi(writer, "rc", Some(code), &count.to_string())?;
            }
            Ok(())
        })?;
    Ok(())
}

/// `<TAG value="…" param="…"><name>TAG/PARAM</name><value>…</value></TAG>`.
fn kpi(writer: &mut Xml, tag: &str, param: Option<&str>, value: &str) -> io::Result<()> {
    let shown = param.map_or_else(|| tag.to_owned(), |param| format!("{tag}/{param}"));
    let mut element = writer.create_element(tag).with_attribute(("value", value));
    if let Some(param) = param {
        element = element.with_attribute(("param", printable(param).as_ref()));
    }
    element.write_inner_content(|writer| {
        text_element(writer, "name", &shown)?;
        text_element(writer, "value", value)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_are_escaped_and_keep_no_control_characters() {
        let case = Case {
            classname: "peregrine.labels",
            name: "a<b> & \"c\"\u{1}".to_owned(),
            time: Some("0.500000".to_owned()),
            failure: Some(Failure {
                message: "1 of 2 samples failed".to_owned(),
                kind: "errors",
                text: Some("1 × <refused>\u{7}".to_owned()),
            }),
        };
        let text = document(|writer| case.write(writer));
        assert_eq!(
            text,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testcase classname=\"peregrine.labels\" name=\"a&lt;b&gt; &amp; &quot;c&quot; \" time=\"0.500000\">\n  <failure message=\"1 of 2 samples failed\" type=\"errors\">1 × &lt;refused&gt; </failure>\n</testcase>\n"
        );
    }
}
