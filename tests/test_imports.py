"""Every module imports with only torch and numpy (optional packages load lazily)."""
import subprocess
import sys
import textwrap

from tests.conftest import REPO

BLOCKED = ["onnx", "onnxruntime", "onnx_graphsurgeon", "polygraphy", "onnxscript", "tensorrt", "pycuda",
           "cuda", "matplotlib", "yaml"]


def test_all_modules_import_without_optional_packages():
    code = textwrap.dedent(f"""
        import importlib, importlib.abc, pkgutil, sys
        blocked = {BLOCKED!r}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in blocked:
                    raise ImportError('blocked for this test: ' + name)
        sys.meta_path.insert(0, Block())
        import qvggt_deploy
        failed = []
        for mod in pkgutil.walk_packages(qvggt_deploy.__path__, 'qvggt_deploy.'):
            if mod.name.endswith('__main__'):
                continue
            try:
                importlib.import_module(mod.name)
            except Exception as exc:
                failed.append(f'{{mod.name}}: {{exc!r}}')
        print('\\n'.join(failed))
        sys.exit(1 if failed else 0)
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
