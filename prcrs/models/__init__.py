"""Model zoo: backbones behind one Lightning interface, tabular baselines, transfer learning."""
