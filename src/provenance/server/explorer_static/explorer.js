/* provenance explorer: plain JavaScript, no build step, nothing loaded from elsewhere. */
"use strict";

const provenanceExplorer = (() => {
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function getJson(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
    return body;
  }

  const short = (hex) => (hex && hex.length > 20 ? hex.slice(0, 18) + "\u2026" : hex);
  const modelLink = (id, text) => el("a", { href: `/models/${id}`, class: "mono" }, text || short(id));
  const badge = (status) => el("span", { class: `badge status-${status}` }, status);

  function table(headers, rows) {
    return el(
      "table",
      {},
      el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c))))),
    );
  }

  function facts(target, pairs) {
    target.replaceChildren();
    for (const [key, value] of pairs) {
      if (value === null || value === undefined || value === "") continue;
      target.append(el("dt", {}, key), el("dd", {}, value));
    }
  }

  const json = (value) => el("code", {}, JSON.stringify(value));

  // ------------------------------------------------------------------ search
  async function runSearch(q) {
    const results = $("results");
    const message = $("message");
    results.replaceChildren();
    if (!q) return;
    message.textContent = "searching\u2026";
    try {
      const found = await getJson(`/api/search?q=${encodeURIComponent(q)}`);
      message.textContent = found.length ? `${found.length} models` : "no model matches";
      for (const m of found) {
        results.append(
          el(
            "li",
            { class: "result" },
            modelLink(m.id, m.name || m.id),
            " ",
            badge(m.status),
            el("div", { class: "mono muted" }, `${m.id} \u00b7 registered by ${m.registrant} in block ${m.block}`),
          ),
        );
      }
    } catch (error) {
      message.textContent = String(error.message || error);
      message.className = "error";
    }
  }

  function searchPage() {
    const form = $("search");
    const input = $("q");
    const initial = new URLSearchParams(location.search).get("q");
    if (initial) {
      input.value = initial;
      runSearch(initial);
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const q = input.value.trim();
      history.replaceState(null, "", q ? `/?q=${encodeURIComponent(q)}` : "/");
      runSearch(q);
    });
  }

  // -------------------------------------------------------------- model page
  function modelId() {
    return decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
  }

  function showRecord(m) {
    document.title = `${m.name || short(m.id)} \u00b7 provenance explorer`;
    $("name").textContent = m.name || short(m.id);
    const status = $("status");
    status.textContent = m.status;
    status.className = `badge status-${m.status}`;
    $("model-id").textContent = m.id;
    const links = (list) =>
      list.length
        ? el("span", {}, ...list.flatMap((p, i) => [i ? ", " : "", modelLink(p.id, p.name || short(p.id)), ` (${p.relation}, ${p.status})`]))
        : "none";
    facts($("record"), [
      ["on chain", m.on_chain_status + (m.tainted ? " \u00b7 tainted: an ancestor is revoked" : "")],
      ["registrant", el("span", { class: "mono" }, m.registrant)],
      ["registered", `block ${m.block}` + (m.registered_at ? ` \u00b7 ${new Date(m.registered_at * 1000).toISOString()}` : "")],
      ["transaction", el("span", { class: "mono" }, m.transaction)],
      ["certificate", el("span", { class: "mono" }, `${m.certificate_digest} (ipfs://${m.certificate_cid})`)],
      ["model digest", el("span", { class: "mono" }, m.model_digest)],
      ["data commitment", el("span", { class: "mono" }, m.data_commitment)],
      ["parents", links(m.parents)],
      ["children", links(m.children)],
      ["revoked by", m.revoked_by ? el("span", { class: "mono" }, m.revoked_by) : null],
      ["revocation reason", m.revoke_reason ? el("span", { class: "mono" }, m.revoke_reason) : null],
      ["revoked ancestors", m.revoked_ancestors.length ? el("span", {}, ...m.revoked_ancestors.map((a) => modelLink(a))) : null],
    ]);
  }

  function showCertificate(m) {
    const target = $("certificate");
    target.replaceChildren();
    const c = m.certificate;
    if (!c) {
      target.append(el("p", { class: "error" }, m.certificate_error || "no certificate"));
      return;
    }
    const summary = el("dl", { class: "facts" });
    facts(summary, [
      ["name", c.model_name],
      ["created", c.created_at],
      ["creator", c.creator ? el("span", { class: "mono" }, c.creator) : "not named"],
      ["parents", c.parents.length ? el("span", {}, ...c.parents.map((p) => el("span", {}, modelLink(p.id, p.name || short(p.id)), ` (${p.relation}) `))) : "none"],
      ["training command", c.training.command.length ? el("code", {}, c.training.command.join(" ")) : null],
      ["parameters", Object.keys(c.training.parameters).length ? json(c.training.parameters) : null],
      ["metrics", Object.keys(c.training.metrics).length ? json(c.training.metrics) : null],
      ["data commitment", el("span", { class: "mono" }, c.data.commitment)],
      ["data URL", c.data.url],
      ["model format", c.model.format],
      ["framework", c.model.framework ? `${c.model.framework.name} ${c.model.framework.version}` : null],
      ["model URL", c.model.url],
      ["source", c.source ? json(c.source) : null],
      ["warnings", c.warnings.length ? c.warnings.join("; ") : null],
    ]);
    target.append(summary);
    target.append(el("h3", {}, `Preprocessing steps (${c.steps.length})`));
    if (c.steps.length)
      target.append(table(["step", "code digest", "parameters"], c.steps.map((s) => [s.name, el("span", { class: "mono" }, s.source_digest || "-"), json(s.arguments)])));
    target.append(el("h3", {}, `Datasets (${c.data.datasets.length})`));
    if (c.data.datasets.length)
      target.append(
        table(
          ["name", "role", "commitment", "kind"],
          c.data.datasets.map((d) => [d.name, d.role, el("span", { class: "mono" }, d.commitment), (d.confidential ? "confidential" : d.kind || "-") + (d.subset ? ", subset" : "")]),
        ),
      );
    target.append(el("h3", {}, "Environment"));
    const env = c.environment;
    target.append(env ? el("p", {}, `${env.os} \u00b7 ${env.python} \u00b7 ${env.cpu}` + (env.gpus.length ? ` \u00b7 GPUs: ${env.gpus.join(", ")}` : "") + ` \u00b7 ${env.packages} packages` + (env.image_id ? ` \u00b7 image ${env.image_id}` : "")) : el("p", { class: "muted" }, "not recorded"));
    target.append(el("h3", {}, `Model files (${c.model.files.length})`));
    target.append(table(["path", "size", "digest"], c.model.files.map((f) => [el("span", { class: "mono" }, f.path), String(f.size), el("span", { class: "mono" }, f.digest)])));
    target.append(el("p", {}, el("a", { href: `/api/models/${m.id}/certificate` }, "the whole certificate (JSON)")));
  }

  // Family tree: Graphviz's SVG inline; hover highlights a model and its links, drag pans,
  // the wheel zooms (both on the viewBox), a click on a model follows its link.
  async function showTree(id) {
    const box = $("tree");
    const response = await fetch(`/api/models/${id}/tree?format=svg`);
    if (!response.ok) {
      box.replaceChildren(el("p", { class: "error" }, (await response.json().catch(() => ({}))).detail || response.statusText));
      return;
    }
    box.innerHTML = await response.text();
    const svg = box.querySelector("svg");
    svg.removeAttribute("width");
    svg.removeAttribute("height");
    const initial = svg.getAttribute("viewBox").split(/\s+/).map(Number);
    let view = initial.slice();
    const apply = () => svg.setAttribute("viewBox", view.join(" "));

    for (const node of svg.querySelectorAll("g.node")) {
      const hex = node.id.replace(/^model-/, "");
      const related = [node, ...svg.querySelectorAll(`g.edge[id*="${hex}"]`)];
      node.addEventListener("mouseenter", () => related.forEach((g) => g.classList.add("hover")));
      node.addEventListener("mouseleave", () => related.forEach((g) => g.classList.remove("hover")));
    }

    let drag = null;
    let moved = false;
    box.addEventListener("pointerdown", (event) => {
      drag = { x: event.clientX, y: event.clientY, view: view.slice() };
      moved = false;
    });
    window.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 4) moved = true;
      if (!moved) return;
      box.classList.add("dragging");
      const scale = view[2] / box.clientWidth;
      view = [drag.view[0] - dx * scale, drag.view[1] - dy * scale, view[2], view[3]];
      apply();
    });
    window.addEventListener("pointerup", () => {
      drag = null;
      box.classList.remove("dragging");
    });
    box.addEventListener("click", (event) => {
      if (moved) {
        event.preventDefault();
        event.stopPropagation();
        moved = false;
      }
    }, true);
    box.addEventListener("wheel", (event) => {
      event.preventDefault();
      const factor = event.deltaY > 0 ? 1.15 : 1 / 1.15;
      const rect = box.getBoundingClientRect();
      const fx = (event.clientX - rect.left) / rect.width;
      const fy = (event.clientY - rect.top) / rect.height;
      const w = view[2] * factor;
      const h = view[3] * factor;
      view = [view[0] + (view[2] - w) * fx, view[1] + (view[3] - h) * fy, w, h];
      apply();
    }, { passive: false });
    box.addEventListener("dblclick", () => {
      view = initial.slice();
      apply();
    });
  }

  async function showVerification(id) {
    const target = $("verification");
    try {
      const report = await getJson(`/api/models/${id}/verification`);
      target.className = "";
      target.replaceChildren(
        el("p", {}, "overall: ", el("span", { class: `badge ${report.ok ? "pass" : "fail"}` }, report.ok ? "verified" : "not verified")),
        table(
          ["check", "result", "detail"],
          (report.checks || []).map((c) => [c.name + (c.subject ? ` (${c.subject})` : ""), el("span", { class: `badge ${c.status}` }, c.status), c.detail || ""]),
        ),
      );
    } catch (error) {
      target.className = "error";
      target.textContent = `verification failed to run: ${error.message || error}`;
    }
  }

  async function showAttestations(id) {
    const target = $("attestations");
    try {
      const found = await getJson(`/api/models/${id}/attestations`);
      target.className = "";
      if (!found.attestor) {
        target.replaceChildren(el("p", { class: "muted" }, "no OutputAttestor is configured"));
        return;
      }
      target.replaceChildren(
        el("h3", {}, `Authorised inference nodes (${found.nodes.length})`),
        found.nodes.length ? table(["node", "image", "since block"], found.nodes.map((n) => [el("span", { class: "mono" }, n.node), el("span", { class: "mono" }, n.image_id), String(n.block)])) : el("p", { class: "muted" }, "none"),
        el("h3", {}, `Attested output batches (${found.batches.length})`),
        found.batches.length
          ? table(["root", "node", "outputs", "block"], found.batches.map((b) => [el("span", { class: "mono" }, b.root), el("span", { class: "mono" }, b.node), `${b.count} (sequence ${b.first_sequence}\u2026)`, String(b.block)]))
          : el("p", { class: "muted" }, "none yet"),
      );
    } catch (error) {
      target.className = "error";
      target.textContent = String(error.message || error);
    }
  }

  async function modelPage() {
    const id = modelId();
    const message = $("message");
    let model;
    try {
      model = await getJson(`/api/models/${encodeURIComponent(id)}`);
    } catch (error) {
      message.textContent = String(error.message || error);
      message.className = "error";
      return;
    }
    message.hidden = true;
    $("model").hidden = false;
    showRecord(model);
    showCertificate(model);
    await Promise.all([showTree(model.id), showAttestations(model.id), showVerification(model.id)]);
  }

  return { searchPage, modelPage };
})();
