"""Click parameter types shared by the edgec commands: values arrive parsed and checked."""

from __future__ import annotations

import click

from edgec.errors import InputError


class InputSpecType(click.ParamType):
    """``NAME:DIMS[:DTYPE]`` parsed into a TensorSpec."""

    name = "NAME:DIMS[:DTYPE]"

    def convert(self, value, param, ctx):
        from edgec.signature import TensorSpec, parse_input_option

        if isinstance(value, TensorSpec):
            return value
        try:
            return parse_input_option(value)
        except InputError as err:
            self.fail(str(err), param, ctx)


class HostPortType(click.ParamType):
    name = "HOST:PORT"

    def convert(self, value, param, ctx):
        host, _, port = str(value).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            self.fail(f"{value!r} is not HOST:PORT", param, ctx)
        return host, int(port)
