// The clinician page: validates like the server, asks the API, draws the answer.
// Plain JavaScript served by the app itself: no CDN, works offline.
"use strict";

const KEY_STORAGE = "womac-api-key";
const form = () => document.getElementById("patient-form");
const byId = (id) => document.getElementById(id);

function setText(id, text) {
  byId(id).textContent = text;
}

function fieldInputs() {
  return Array.from(form().querySelectorAll("[data-kind]"));
}

function labelOf(input) {
  const label = form().querySelector(`label[for="${input.id}"]`);
  return label ? label.childNodes[0].textContent.trim() : input.name;
}

function showError(name, message) {
  const box = byId(`e-${name}`);
  const input = byId(`f-${name}`);
  if (!box || !input) return false;
  box.textContent = message;
  input.setAttribute("aria-invalid", message ? "true" : "false");
  input.closest(".field").classList.toggle("invalid", Boolean(message));
  return true;
}

function clearErrors() {
  fieldInputs().forEach((input) => showError(input.name, ""));
  setText("form-status", "");
  setText("api-key-error", "");
}

function parseNumber(text) {
  // Clinics in many locales type 29,5 for 29.5.
  const normalised = text.replace(",", ".");
  if (!/^[+-]?(\d+\.?\d*|\.\d+)$/.test(normalised)) return NaN;
  return Number(normalised);
}

// The same checks as the API's schema, from the same contract (data-min, data-max, data-rule).
function validate() {
  const payload = {};
  const problems = [];
  for (const input of fieldInputs()) {
    const kind = input.dataset.kind;
    const text = input.value.trim();
    const required = input.hasAttribute("required");
    if (text === "") {
      if (required) problems.push([input, "Required."]);
      else if (input.dataset.nullable === "true") payload[input.name] = null;
      continue;
    }
    if (kind === "number" || kind === "integer") {
      const value = parseNumber(text);
      const min = Number(input.dataset.min);
      const max = Number(input.dataset.max);
      const rule = input.dataset.rule;
      if (Number.isNaN(value)) problems.push([input, `Not a number: ${rule}.`]);
      else if (kind === "integer" && !Number.isInteger(value))
        problems.push([input, `Not a whole number: ${rule}.`]);
      else if (input.dataset.min !== undefined && (value < min || value > max))
        problems.push([input, `Out of range: ${rule}.`]);
      else payload[input.name] = value;
    } else if (kind === "boolean") {
      payload[input.name] = text === "true";
    } else {
      payload[input.name] = text;
    }
  }
  return { payload, problems };
}

function apiHeaders() {
  const headers = { "Content-Type": "application/json" };
  const key = byId("api-key").value.trim();
  if (key) headers["X-API-Key"] = key;
  return headers;
}

function explainStatus(response, body) {
  if (response.status === 401) {
    const missing = !byId("api-key").value.trim();
    byId("api-key-field").hidden = false;
    setText(
      "api-key-error",
      missing
        ? "This service needs an API key: enter it above."
        : "The API key was not accepted: check it and try again."
    );
    byId("api-key").focus();
    return;
  }
  const detail = body && typeof body.detail === "string" ? body.detail : "";
  setText("form-status", `The service could not answer (${response.status}). ${detail}`);
}

async function submit(event) {
  event.preventDefault();
  clearErrors();
  const { payload, problems } = validate();
  if (problems.length) {
    problems.forEach(([input, message]) => showError(input.name, message));
    setText("form-status", `Please correct ${problems.length} field(s).`);
    problems[0][0].focus();
    return;
  }
  sessionStorage.setItem(KEY_STORAGE, byId("api-key").value.trim());
  const button = byId("estimate");
  button.disabled = true;
  setText("form-status", "Estimating…");
  try {
    const response = await fetch("/v1/predict", {
      method: "POST",
      headers: apiHeaders(),
      body: JSON.stringify(payload),
    });
    const body = await response.json().catch(() => null);
    if (response.status === 422 && body && Array.isArray(body.detail)) {
      let first = null;
      for (const issue of body.detail) {
        const shown = showError(issue.field, issue.msg);
        if (shown && !first) first = byId(`f-${issue.field}`);
        if (!shown) setText("form-status", `${issue.field}: ${issue.msg}`);
      }
      if (first) {
        setText("form-status", "The service found a problem with the fields marked.");
        first.focus();
      }
      return;
    }
    if (!response.ok) {
      explainStatus(response, body);
      return;
    }
    setText("form-status", "");
    render(payload, body);
  } catch (error) {
    setText("form-status", "The service cannot be reached.");
  } finally {
    button.disabled = false;
  }
}

const points = (x) => `${x >= 0 ? "+" : "−"}${Math.abs(x).toFixed(1)}`;
const plain = (x) => `${x < 0 ? "−" : ""}${Math.abs(x).toFixed(1)}`;

function valueText(contribution) {
  const value = contribution.value;
  if (value === null || value === undefined) return "unknown";
  if (value === true) return "yes";
  if (value === false) return "no";
  if (typeof value === "number") {
    const unit = contribution.unit && contribution.unit !== "points" ? ` ${contribution.unit}` : "";
    return `${Number.isInteger(value) ? value : value.toFixed(1)}${unit}`;
  }
  return String(value).replace(/_/g, " ");
}

function sentence(c) {
  const verb = c.contribution >= 0 ? "raises" : "lowers";
  // "BMI 34 kg/m2 lowers …", "PRP with cells: yes raises …"
  const subject =
    typeof c.value === "number" ? `${c.label} ${valueText(c)}` : `${c.label}: ${valueText(c)}`;
  return `${subject} ${verb} the expected improvement by ${Math.abs(c.contribution).toFixed(
    1
  )} points.`;
}

function render(payload, answer) {
  const baseline =
    payload.womac_pain_0 + payload.womac_stiffness_0 + payload.womac_function_0;
  const expected = answer.expected_improvement;
  setText("r-expected", points(expected));
  setText(
    "r-percent",
    baseline > 0
      ? `${Math.round((100 * expected) / baseline)}% of the baseline total of ${baseline} points`
      : "Baseline total is 0: no improvement is possible."
  );
  const interval = answer.interval;
  setText(
    "r-interval",
    `${plain(interval.lower)} to ${plain(interval.upper)} points (${Math.round(
      interval.level * 100
    )}% of such patients)`
  );
  setText("r-level", `${Math.round(interval.level * 100)}%`);
  setText("r-probability", `${Math.round(answer.p_clinically_important * 100)}%`);
  const eligible = answer.eligibility.candidate;
  const eligibility = byId("r-eligibility");
  eligibility.textContent = eligible ? "Candidate under the protocol" : "Not a candidate under the protocol";
  eligibility.className = eligible ? "ok" : "no";
  const reasons = byId("r-reasons");
  reasons.replaceChildren(
    ...answer.eligibility.reasons.map((reason) => {
      const item = document.createElement("li");
      item.textContent = reason;
      return item;
    })
  );
  const warnings = byId("r-warnings");
  warnings.replaceChildren(
    ...answer.warnings.map((warning) => {
      const item = document.createElement("li");
      item.textContent = warning;
      return item;
    })
  );
  byId("r-warnings-box").hidden = answer.warnings.length === 0;

  const contributions = answer.explanation.contributions
    .filter((c) => Math.abs(c.contribution) > 0.005)
    .sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution));
  drawWaterfall(answer.explanation.base_value, contributions, expected);
  byId("r-sentences").replaceChildren(
    ...contributions.slice(0, 3).map((c) => {
      const item = document.createElement("li");
      item.textContent = sentence(c);
      return item;
    })
  );
  const model = answer.model;
  setText("r-model", `Model ${model.name} version ${model.version}.`);
  printSummary(payload);
  const result = byId("result");
  result.hidden = false;
  result.focus();
}

const SVG = "http://www.w3.org/2000/svg";

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

// Waterfall: from the average patient, each field's contribution, to this patient.
function drawWaterfall(base, contributions, expected, shown = 7) {
  const top = contributions.slice(0, shown);
  const rest = contributions.slice(shown).reduce((sum, c) => sum + c.contribution, 0);
  const short = (text) => (text.length > 40 ? `${text.slice(0, 39)}…` : text);
  const steps = top.map((c) => ({
    label: short(`${c.label.replace(" (baseline)", "")}: ${valueText(c)}`),
    delta: c.contribution,
  }));
  if (contributions.length > shown)
    steps.push({ label: `${contributions.length - shown} other fields`, delta: rest });
  const rows = [{ label: "Average treated patient", total: base }];
  let running = base;
  for (const step of steps) {
    rows.push({ label: step.label, from: running, to: running + step.delta, delta: step.delta });
    running += step.delta;
  }
  rows.push({ label: "This patient", total: expected });

  const values = rows.flatMap((r) => (r.total !== undefined ? [0, r.total] : [r.from, r.to]));
  const low = Math.min(0, ...values);
  const high = Math.max(...values);
  const width = 640;
  const labelWidth = 270;
  const barArea = width - labelWidth - 70;
  const rowHeight = 26;
  const height = rows.length * rowHeight + 30;
  const x = (v) => labelWidth + ((v - low) / (high - low || 1)) * barArea;

  const svg = svgElement("svg", {
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-labelledby": "chart-title chart-desc",
    class: "waterfall",
  });
  svg.appendChild(
    svgElement(
      "desc",
      { id: "chart-desc" },
      `Average ${plain(base)} points; ` +
        steps.map((s) => `${s.label} ${points(s.delta)}`).join("; ") +
        `; this patient ${plain(expected)} points.`
    )
  );
  svg.appendChild(svgElement("line", { x1: x(0), x2: x(0), y1: 4, y2: height - 24, class: "axis" }));
  rows.forEach((row, i) => {
    const y = 8 + i * rowHeight;
    svg.appendChild(
      svgElement("text", { x: labelWidth - 8, y: y + 14, class: "label", "text-anchor": "end" }, row.label)
    );
    let left;
    let right;
    let kind;
    let value;
    if (row.total !== undefined) {
      left = Math.min(x(0), x(row.total));
      right = Math.max(x(0), x(row.total));
      kind = "total";
      value = plain(row.total);
    } else {
      left = Math.min(x(row.from), x(row.to));
      right = Math.max(x(row.from), x(row.to));
      kind = row.delta >= 0 ? "up" : "down";
      value = points(row.delta);
    }
    svg.appendChild(
      svgElement("rect", {
        x: left,
        y,
        width: Math.max(right - left, 1.5),
        height: rowHeight - 8,
        class: `bar ${kind}`,
      })
    );
    svg.appendChild(svgElement("text", { x: right + 6, y: y + 14, class: "value" }, value));
  });
  svg.appendChild(
    svgElement("text", { x: labelWidth, y: height - 6, class: "scale" }, "WOMAC points (0 = no change)")
  );
  byId("r-chart").replaceChildren(svg);
}

// For print: what was entered, compactly (the patient ID is never printed).
function printSummary(payload) {
  const known = [];
  const unknown = [];
  for (const input of fieldInputs()) {
    if (input.name === "patient_id") continue;
    const v = payload[input.name];
    if (v === undefined || v === null) {
      unknown.push(labelOf(input));
      continue;
    }
    const item = document.createElement("div");
    const name = document.createElement("dt");
    name.textContent = labelOf(input);
    const value = document.createElement("dd");
    value.textContent = v === true ? "yes" : v === false ? "no" : String(v).replace(/_/g, " ");
    item.append(name, value);
    known.push(item);
  }
  byId("print-inputs").replaceChildren(...known);
  setText("print-unknown", unknown.length ? `Unknown: ${unknown.join(", ")}.` : "");
}

async function start() {
  form().addEventListener("submit", submit);
  form().addEventListener("reset", () => {
    clearErrors();
    byId("result").hidden = true;
  });
  const stored = sessionStorage.getItem(KEY_STORAGE);
  if (stored) byId("api-key").value = stored;
  try {
    const health = await (await fetch("/health")).json();
    byId("api-key-field").hidden = !health.auth_required;
    if (!health.model_loaded)
      setText("form-status", "No model is being served yet: ask for one to be trained (womac train).");
    const model = await fetch("/v1/model", { headers: apiHeaders() });
    if (model.ok) {
      const card = await model.json();
      const definition = card.responder_definition || {};
      if (definition.min_points !== undefined)
        setText(
          "r-threshold",
          `${definition.min_points} points and at least ${Math.round(
            definition.min_fraction * 100
          )}% of the baseline total`
        );
    }
  } catch (error) {
    setText("form-status", "The service cannot be reached.");
  }
}

document.addEventListener("DOMContentLoaded", start);
