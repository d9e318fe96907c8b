"""Break it: kill, stop, start, restart, slow, failing, heal a part; partition or mend a
link; make a service trespass into another's file; poison the bus. Each is done as the
CLI does it (../actions.py), its effect seen on the picture, in the answers and in
`msshop status`. A part of the picture, clicked or Enter on it, is the part to break.
"""

from __future__ import annotations

from msshop.contracts.topology import NAMES

LINKS = ("query users", "query products", "query orders", "orders products", "orders users")
SERVICES = ("users", "products", "orders", "query")

TITLE = "Break it"


def html() -> str:
    options = "".join(f"<option{' selected' if n == 'products' else ''}>{n}</option>"
                      for n in NAMES)
    links = "".join(f'<option value="{link}">{link.replace(" ", " → ")}</option>'
                    for link in LINKS)
    services = "".join(f"<option>{n}</option>" for n in SERVICES)
    return (HTML.replace("{options}", options).replace("{links}", links)
            .replace("{services}", services))


HTML = """
<div class="controls">
<label>part <select id="target">{options}</select></label>
<button type="button" data-action="kill">kill</button>
<button type="button" data-action="stop">stop</button>
<button type="button" data-action="start">start</button>
<button type="button" data-action="restart">restart</button>
<button type="button" data-action="slow">slow (+300 ms)</button>
<button type="button" data-action="failing">failing (50%)</button>
<button type="button" data-action="heal">heal</button>
</div>
<div class="controls">
<label>link <select id="link">{links}</select></label>
<button type="button" data-link="partition">partition</button>
<button type="button" data-link="mend">mend</button>
</div>
<div class="controls">
<label>make <select id="trespasser">{services}</select></label>
<label>open the file of <select id="into"><option>users</option>
<option selected>products</option><option>orders</option><option>query</option></select>
</label>
<button type="button" data-trespass="trespass">trespass</button>
<button type="button" id="poison">poison the bus</button>
</div>
<p class="hint">Every button does what the CLI does (msshop kill, stop, start, restart,
chaos, trespass, poison): its effect shows above, in the answers, in Watch, and in msshop
status.</p>
"""

STYLE = ""

SCRIPT = """
// a part of the picture, clicked or Enter on it: the part to break, in Break it
for (const part of document.querySelectorAll("#shop .part")) {
  const pick = () => {
    document.getElementById("target").value = part.dataset.part;
    choose(document.getElementById("tab-break"));
  };
  part.addEventListener("click", pick);
  part.addEventListener("keydown", event => { if (event.key === "Enter") pick(); });
}
for (const button of document.querySelectorAll("[data-action]")) {
  button.addEventListener("click", () => post("/action", {
    part: document.getElementById("target").value, action: button.dataset.action}));
}
for (const button of document.querySelectorAll("[data-link]")) {
  button.addEventListener("click", () => {
    const [part, to] = document.getElementById("link").value.split(" ");
    post("/action", {part, to, action: button.dataset.link});
  });
}
document.getElementById("poison").addEventListener("click", () => post("/action", {
  part: "bus", action: "poison"}));
document.querySelector("[data-trespass]").addEventListener("click", () => post("/action", {
  part: document.getElementById("trespasser").value, action: "trespass",
  to: document.getElementById("into").value}));
"""
