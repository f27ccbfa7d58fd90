"""vagrant/: the Vagrantfile parses, provisions with the README's own script
and nothing else, names exactly the boxes and providers vagrant/README.md
documents, and gives each VM at least 2 CPUs and 2 GiB. Neither Ruby nor
Vagrant is needed: where they are installed they check the file too."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VAGRANT = REPO / "vagrant"
VAGRANTFILE = VAGRANT / "Vagrantfile"
SETUP = REPO / "scripts" / "setup.sh"


def code() -> str:
    """The Vagrantfile without comments (no '#' appears inside its strings
    except in #{...} interpolation)."""
    return "\n".join(re.sub(r"#(?!\{).*", "", line) for line in VAGRANTFILE.read_text().splitlines())


def constants(text: str) -> dict[str, object]:
    """Top-level constants: NAME = 2, NAME = "x", NAME = %w[a b], NAME = { "k" => "v" }."""
    out: dict[str, object] = {}
    for name, value in re.findall(r"^([A-Z][A-Z0-9_]*)\s*=\s*(.+?)(?:\.freeze)?\s*$", text, re.M):
        if value.isdigit():
            out[name] = int(value)
        elif m := re.fullmatch(r'"([^"]*)"', value):
            out[name] = m.group(1)
        elif m := re.fullmatch(r"%w\[([^\]]*)\]", value):
            out[name] = m.group(1).split()
    for name, body in re.findall(r"^([A-Z][A-Z0-9_]*)\s*=\s*\{(.*?)\}", text, re.M | re.S):
        out[name] = dict(re.findall(r'"([^"]+)"\s*=>\s*"([^"]+)"', body))
    return out


def resolve(value: str, consts: dict[str, object]):
    value = value.strip().strip('"')
    if value.isdigit():
        return int(value)
    return consts.get(value, value)


def interpolate(text: str, consts: dict[str, object]) -> str:
    return re.sub(r"#\{([A-Z][A-Z0-9_]*)\}", lambda m: str(consts[m.group(1)]), text)


def boxes(text: str) -> dict[str, str]:
    """machine name -> box, through a BOXES hash or literal defines."""
    consts = constants(text)
    found = dict(consts.get("BOXES", {}))
    for name, body in re.findall(r'\.define\s+"([^"]+)"\s+do(.*?)\bend\b', text, re.S):
        if m := re.search(r'\.box\s*=\s*"([^"]+)"', body):
            found[name] = m.group(1)
    return found


def providers(text: str) -> set[str]:
    consts = constants(text)
    named = set(re.findall(r'\.provider\s+"([^"]+)"', text))
    for each in re.findall(r"\b([A-Z][A-Z0-9_]*)\.each\s+do\s+\|(\w+)\|(.*?)\bend\b", text, re.S):
        const, var, body = each
        if re.search(rf"\.provider\s+{var}\b", body):
            named.update(consts[const])
    return named


def provisions(text: str) -> dict[str, str]:
    """provisioner name -> its inline command, interpolated."""
    consts = constants(text)
    return {name: interpolate(inline, consts) for name, inline in
            re.findall(r'\.provision\s+"([^"]+)",[^\n]*?inline:\s*"([^"]*)"', text)}


def documented() -> tuple[dict[str, str], set[str]]:
    """The machine | box | providers table of vagrant/README.md."""
    rows = re.findall(r"^\|\s*([\w-]+)\s*\|\s*([\w./-]+)\s*\|\s*([\w, ]+?)\s*\|\s*$",
                      (VAGRANT / "README.md").read_text(), re.M)
    rows = [r for r in rows if r[0] != "machine"]
    assert rows, "vagrant/README.md has no machine | box | providers table"
    provs = [frozenset(p.strip() for p in r[2].split(",")) for r in rows]
    assert len(set(provs)) == 1, "every machine must be documented with the same providers"
    return {r[0]: r[1] for r in rows}, set(provs[0])


@pytest.mark.skipif(shutil.which("ruby") is None, reason="ruby is not installed")
def test_ruby_parses_the_vagrantfile():
    proc = subprocess.run(["ruby", "-c", str(VAGRANTFILE)], capture_output=True, text=True)
    assert proc.returncode == 0 and "Syntax OK" in proc.stdout, proc.stderr


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed")
def test_vagrant_validates_the_vagrantfile():
    proc = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=VAGRANT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_vagrantfile_is_balanced():
    """What Ruby would reject first, checked without Ruby: do/end and brackets."""
    text = code()
    assert re.search(r'^Vagrant\.configure\("2"\) do \|config\|$', text, re.M)
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    opens = len(re.findall(r"\bdo\b", text)) + len(re.findall(r"^\s*(?:if|unless|def|class|module)\b", text, re.M))
    assert opens == len(re.findall(r"\bend\b", text))
    for left, right in ("()", "[]", "{}"):
        assert text.count(left) == text.count(right), left + right


def test_provisioning_is_the_readmes_script():
    text = code()
    consts = constants(text)
    sync = re.search(r'synced_folder\s+"\.\.",\s*(\w+|"[^"]+")', text)
    assert sync, "the repository (..) must be synced into the VM"
    repo = resolve(sync.group(1), consts)
    assert provisions(text) == {"setup": f"{repo}/scripts/setup.sh setup",
                                "test": f"{repo}/scripts/setup.sh test"}
    assert re.search(r'provision\s+"test",[^\n]*run:\s*"never"', text), "tests run only when asked"
    # No second copy of the install steps.
    for step in ("apt-get", "apt install", "pip install", "-m venv", "bpfcc", "curl", "wget"):
        assert step not in text, step


def test_setup_script_exists_with_the_commands_the_vm_runs():
    assert SETUP.is_file() and os.access(SETUP, os.X_OK), f"{SETUP} must be executable"
    cases = re.findall(r"^\s*([a-z|]+)\)", SETUP.read_text(), re.M)
    assert {"setup", "test"} <= set(cases)


def test_boxes_and_providers_are_the_documented_ones():
    text = code()
    doc_boxes, doc_providers = documented()
    assert boxes(text) == doc_boxes
    assert providers(text) == doc_providers
    assert {"libvirt", "virtualbox"} <= doc_providers
    readme = (VAGRANT / "README.md").read_text()
    up = re.search(r"vagrant up (\w+) --provider=(\w+)", readme)
    assert up and up.group(1) in doc_boxes and up.group(2) in doc_providers
    assert f"vagrant provision {up.group(1)} --provision-with test" in readme


def test_every_provider_gets_two_cpus_and_two_gib():
    text = code()
    consts = constants(text)
    cpus = [resolve(v, consts) for v in re.findall(r"\.cpus\s*=\s*([\w\"]+)", text)]
    memory = [resolve(v, consts) for v in re.findall(r"\.memory\s*=\s*([\w\"]+)", text)]
    assert cpus and memory
    assert all(isinstance(c, int) and c >= 2 for c in cpus), cpus
    assert all(isinstance(m, int) and m >= 2048 for m in memory), memory
    # Set in a loop over every provider, or once in each provider's block.
    named = re.findall(r'\.provider\s+"([^"]+)"', text)
    assert len(cpus) >= len(named) and len(memory) >= len(named)


def test_ci_example_boots_and_tests_every_machine():
    workflow = (VAGRANT / "github-actions-example.yml").read_text()
    assert "github-actions-example.yml" in (VAGRANT / "README.md").read_text()
    matrix = re.search(r"^\s*machine:\s*\[([^\]]*)\]", workflow, re.M)
    assert matrix and {m.strip() for m in matrix.group(1).split(",")} == set(boxes(code()))
    assert "vagrant up ${{ matrix.machine }} --provider=libvirt" in workflow
    assert "vagrant provision ${{ matrix.machine }} --provision-with test" in workflow
    assert "/dev/kvm" in workflow and "vagrant-libvirt" in workflow
    assert re.search(r"working-directory:\s*vagrant\b", workflow)
