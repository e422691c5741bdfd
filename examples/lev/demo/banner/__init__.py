"""banner: a second demo tool package; ``lev.demo.portscan``'s workflow imports it as
``from lev.demo.banner.grab import banner``."""

from levrt import annot
from levrt.annot.cats import Attck, BlackArch

from . import grab

__lev__ = annot.meta(
    [grab], desc="Read what a TCP service says first", cats={Attck: Attck.Discovery, BlackArch: BlackArch.Fingerprint}
)
