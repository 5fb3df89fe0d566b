"""The porting core shared by every family: registry, safe checkpoint loading, key mapping, strict load reports, conversion, the parity tool, model/processor mix-ins and atomic file writing."""
