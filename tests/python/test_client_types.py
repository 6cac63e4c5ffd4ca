"""The Python package's type information: py.typed, annotations on the public API, and
luxdb/client.pyi (what a type checker sees of the asyncio client, whose operations
awaitable_operations makes at run time) agreeing with the operations it declares."""

import ast
import inspect
import pathlib

import luxdb
import luxdb.client
import luxdb.sync_client
from luxdb import _base, auth, exceptions, settings

PACKAGE = pathlib.Path(luxdb.__file__).parent


def stub_functions():
    """{name: ast.AsyncFunctionDef or FunctionDef} of class Client in client.pyi (the last
    overload for an overloaded name, which holds the general case), and the module's own."""
    tree = ast.parse((PACKAGE / "client.pyi").read_text())
    [client] = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    methods = {node.name: node for node in client.body
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    functions = {node.name: node for node in tree.body
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return methods, functions


def stub_signature(node):
    """[(name, kind, default, annotation)] of a stub function's parameters, and its return
    annotation, as source text."""
    args = node.args
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + args.defaults
    parameters = [(a.arg, "positional", d, a.annotation) for a, d in zip(positional, defaults)]
    if args.vararg:
        parameters.append((args.vararg.arg, "var", None, args.vararg.annotation))
    parameters += [(a.arg, "keyword", d, a.annotation)
                   for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg:
        parameters.append((args.kwarg.arg, "varkw", None, args.kwarg.annotation))
    text = [(name, kind, None if d is None else ast.unparse(d),
             None if a is None else ast.unparse(a)) for name, kind, d, a in parameters]
    return text, ast.unparse(node.returns)


def runtime_signature(function):
    """What stub_signature gives, from a function's runtime signature (its annotations are
    source text: the package's modules use `from __future__ import annotations`)."""
    kinds = {inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
             inspect.Parameter.POSITIONAL_ONLY: "positional",
             inspect.Parameter.VAR_POSITIONAL: "var",
             inspect.Parameter.KEYWORD_ONLY: "keyword",
             inspect.Parameter.VAR_KEYWORD: "varkw"}
    signature = inspect.signature(function)
    parameters = []
    for p in signature.parameters.values():
        default = None if p.default is p.empty else repr(p.default)
        annotation = None if p.annotation is p.empty else ast.unparse(ast.parse(p.annotation))
        parameters.append((p.name, kinds[p.kind], default, annotation))
    return parameters, ast.unparse(ast.parse(signature.return_annotation))


def test_the_package_is_marked_typed():
    assert (PACKAGE / "py.typed").is_file()
    assert (PACKAGE / "client.pyi").is_file()


def test_stub_declares_every_operation_as_the_runtime_has_it():
    methods, _ = stub_functions()
    for name in _base.OPERATION_NAMES:
        assert name in methods, f"client.pyi does not declare Client.{name}"
        node = methods[name]
        assert isinstance(node, ast.AsyncFunctionDef), f"Client.{name} is not async in the stub"
        assert inspect.iscoroutinefunction(getattr(luxdb.client.Client, name)), name
        stub = stub_signature(node)
        runtime = runtime_signature(getattr(_base.Operations, name))
        assert stub == runtime, f"Client.{name}: client.pyi {stub} != Operations {runtime}"


def test_stub_declares_the_rest_of_the_clients_api_as_the_runtime_has_it():
    methods, functions = stub_functions()
    public = {name for name in dir(luxdb.client.Client) if not name.startswith("_")}
    assert public <= set(methods) | {"address", "connected"}, \
        f"missing from client.pyi: {public - set(methods)}"
    for name in ["__init__", "connect", "quit", "query_stream"]:
        runtime = getattr(luxdb.client.Client, name)
        stub_parameters, _ = stub_signature(methods[name])
        assert stub_parameters == runtime_signature(runtime)[0], name
    # connect(): the runtime function is wrapped by asynccontextmanager; its parameters are
    # those of the function it wraps.
    stub_parameters, returns = stub_signature(functions["connect"])
    assert stub_parameters == runtime_signature(luxdb.client.connect)[0]
    assert returns == "AbstractAsyncContextManager[Client]"


def test_public_api_is_annotated():
    functions = [luxdb.sync_client.connect, luxdb.client.connect, _base.ClientBase.__init__,
                 luxdb.sync_client.SyncClient.connect, luxdb.sync_client.SyncClient.query_stream,
                 auth.derive_key, auth.mint_token, auth.Minter.mint,
                 auth.kdf_params_from_environment, exceptions.error_from_rpc,
                 exceptions.LuxDBError.__init__, settings.resolve_address,
                 settings.resolve_secret, settings.read_secret_file]
    functions += [getattr(_base.Operations, name) for name in _base.OPERATION_NAMES]
    for function in functions:
        signature = inspect.signature(function)
        missing = [p.name for p in signature.parameters.values()
                   if p.annotation is p.empty and p.name != "self"]
        assert not missing, f"{function.__qualname__}: {missing} not annotated"
        assert signature.return_annotation is not signature.empty, function.__qualname__


def test_get_elements_is_get_items():
    assert _base.Operations.get_elements is _base.Operations.get_items
    assert luxdb.sync_client.SyncClient.get_elements is _base.Operations.get_items
    assert inspect.signature(luxdb.client.Client.get_elements) == \
        inspect.signature(luxdb.client.Client.get_items)
    assert "get_elements is the same method" in luxdb.client.Client.get_elements.__doc__
